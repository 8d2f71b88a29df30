"""The order samples are streamed in: disjoint shares, reproducible per (seed, epoch), resumable.

Samples that share a row group (through any of their layers) form one *component*; a component
is the unit that is shuffled, so each row group is needed by one stretch of the stream, fetched
once and then read from the cache. Per epoch:

1. the components are put in an order drawn from ``(seed, epoch)`` (or kept in manifest
   order when not shuffling);
2. the flat sample sequence is cut into contiguous blocks: one per DDP rank, then one per
   DataLoader worker of that rank (the same split as ``train.exported``), so every sample is
   read exactly once per epoch by exactly one (rank, worker). Under DDP the ranks must take
   the same number of steps (a rank with one batch more waits forever for the others), so
   with ``even_ranks`` the sequence is first padded with its own head to a multiple of the
   ranks, as torch's ``DistributedSampler`` does: at most ranks - 1 samples read twice;
3. each share passes through a bounded shuffle buffer drawn from ``(seed, epoch, share)``.

Everything is computed from sample indices alone, before anything is fetched: a share's order is
a list, so resuming after ``n`` samples is ``order[n:]``, exactly the samples not yet seen.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence


def components(needs: Sequence[Sequence[Hashable]]) -> list[list[int]]:
    """Samples (by index) grouped by shared row groups (``needs[i]``: sample i's row groups),
    in order of their first sample; a sample needing none is a component of its own."""
    parent = list(range(len(needs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[Hashable, int] = {}
    for i, groups in enumerate(needs):
        for g in groups:
            j = owner.setdefault(g, i)
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    out: dict[int, list[int]] = {}
    for i in range(len(needs)):
        out.setdefault(find(i), []).append(i)
    return [out[k] for k in sorted(out)]


def block(n: int, parts: int, index: int) -> tuple[int, int]:
    """The ``index``-th of ``parts`` contiguous, near-equal blocks of ``range(n)``."""
    return index * n // parts, (index + 1) * n // parts


def share_index(rank: int, world: int, worker: int, workers: int) -> int:
    return rank * workers + worker


def epoch_sequence(
    comps: Sequence[Sequence[int]], seed: int, epoch: int, shuffle: bool
) -> list[int]:
    order = list(range(len(comps)))
    if shuffle:
        random.Random(f"m3leo-stream/{seed}/{epoch}").shuffle(order)
    return [i for c in order for i in comps[c]]


def padded(seq: Sequence[int], world: int) -> list[int]:
    """``seq`` repeated from its head up to a multiple of ``world`` samples."""
    size = -(-len(seq) // world) * world
    return [seq[i % len(seq)] for i in range(size)]


def rank_samples(n: int, rank: int, world: int, even_ranks: bool = True) -> int:
    """How many samples ``rank`` streams per epoch out of ``n``."""
    if even_ranks and world > 1 and n:
        return -(-n // world)
    lo, hi = block(n, world, rank)
    return hi - lo


def share_of(seq: Sequence[int], rank: int, world: int, worker: int, workers: int) -> list[int]:
    """This (rank, worker)'s contiguous block: the rank's block of ``seq``, then the worker's."""
    lo, hi = block(len(seq), world, rank)
    a, b = block(hi - lo, workers, worker)
    return list(seq[lo + a : lo + b])


def buffered(seq: Sequence[int], size: int, rng: random.Random) -> list[int]:
    """``seq`` through a shuffle buffer of ``size`` (0 or 1: unchanged). An element leaves at
    most ``size`` places after it entered, so row groups stay needed for a bounded stretch. The
    buffer starts at one sample and grows by one per sample drawn: the first batch needs about
    one row group per layer, not the ``size`` samples' worth a full buffer would fetch first."""
    if size <= 1:
        return list(seq)
    buf: list[int] = []
    out: list[int] = []
    for i in seq:
        buf.append(i)
        if len(buf) >= min(size, 1 + len(out)):
            k = rng.randrange(len(buf))
            buf[k], buf[-1] = buf[-1], buf[k]
            out.append(buf.pop())
    rng.shuffle(buf)
    out.extend(buf)
    return out


def share_order(
    comps: Sequence[Sequence[int]],
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    buffer: int,
    rank: int = 0,
    world: int = 1,
    worker: int = 0,
    workers: int = 1,
    even_ranks: bool = True,
) -> list[int]:
    """The sample indices one (rank, worker) streams in ``epoch``, in order."""
    seq = epoch_sequence(comps, seed, epoch, shuffle)
    if even_ranks and world > 1 and seq:
        seq = padded(seq, world)
    mine = share_of(seq, rank, world, worker, workers)
    if not shuffle:
        return mine
    share = share_index(rank, world, worker, workers)
    return buffered(mine, buffer, random.Random(f"m3leo-stream/{seed}/{epoch}/{share}"))
