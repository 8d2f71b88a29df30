"""``data.source=hub``: stream samples from the full edition's shards on the Hub, no download.

:class:`M3LEOStream` is an IterableDataset over the same split plan, reader and assembler as
:class:`~m3leo_cli.train.dataset.StoreDataset`, with each tile located in the stream cache
(``stream.plan``) instead of the store: the same tile gives the same tensors from either
source. Each (rank, worker) streams its own share in an order fixed by (seed, epoch)
(``stream.order``), a prefetch thread fetching the row groups ahead (``stream.fetch``) into the
cache (``stream.cache``), so a later epoch reads locally. :class:`StreamLoader` is the
DataLoader that counts what was delivered, so ``state_dict()`` / ``load_state_dict()`` resume
mid-epoch with exactly the samples not yet seen (Lightning saves and restores it).

A row group that cannot be fetched or decoded is that row group's failure: its samples are
skipped with the reason (``failures``, and ``failures_path`` as JSON lines, written by
whichever process skipped it: ``m3leo train`` reports them and exits 1, a ``StreamLoader``
warns after each epoch that skipped any); no network at all stops the run.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import StreamError, TileError
from .dataset import SplitPlan, StoreDataset, plan_split
from .layers import DataSpec

if TYPE_CHECKING:
    from ..config import Settings
    from ..stream.plan import RowGroup, StreamPlan
    from .normstats import RunStats

PREFETCH_BYTES = 256 * 2**20  # default bytes fetched ahead of the consumer, per worker
SHUFFLE_BUFFER = 64  # default shuffle buffer (samples) of the train split


class M3LEOStream(torch.utils.data.IterableDataset):
    """The samples of one split, streamed from the Hub's shards (see the module docstring)."""

    def __init__(
        self,
        data: DataSpec,
        split: str,
        settings: Settings | None = None,
        *,
        stats: RunStats | None = None,
        seed: int = 0,
        shuffle: bool | None = None,
        shuffle_buffer: int = SHUFFLE_BUFFER,
        cache_dir: str | Path | None = None,
        cache_bytes: int | None = None,
        prefetch_bytes: int = PREFETCH_BYTES,
        rank: int | None = None,
        world_size: int | None = None,
        failures_path: str | Path | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        from ..config import load_settings
        from ..selection import Selection
        from ..stream.cache import RowGroupCache, default_root, resolve_budget
        from ..stream.order import components
        from ..stream.plan import check_streamable, plan_stream

        self.settings = settings = settings or load_settings()
        check_streamable(data.edition)
        root = Path(cache_dir) if cache_dir else default_root(settings.data_dir)
        tokens = [i.modality for i in data.inputs]
        if data.target is not None:
            tokens.append(data.target.modality)
        sel = Selection(
            edition=data.edition, regions=data.regions, splits=(split,), modalities=tuple(tokens)
        )
        self.stream_plan: StreamPlan = plan_stream(settings, sel, root)
        largest = max(self.stream_plan.group_bytes.values(), default=0)
        budget = resolve_budget(root, cache_bytes, prefetch_bytes, largest)
        self.cache = RowGroupCache(root, budget)
        self.prefetch_bytes = int(prefetch_bytes)
        self.seed, self.split = int(seed), split
        self.shuffle = split == "train" if shuffle is None else bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer)
        self.rank, self.world_size = rank, world_size
        # worker processes note skipped samples here, where the main process can count them
        # (``m3leo train`` points it into the run folder; StreamLoader warns after an epoch)
        self.failures_path = (
            Path(failures_path)
            if failures_path
            else root / "failures" / f"{uuid.uuid4().hex}.jsonl"
        )
        self.failures: list[tuple[str, str]] = []  # (tile id, reason), this process's
        self.epoch = 0
        # set by StreamLoader: [epoch, skip of worker 0, 1, ...] in shared memory, which its
        # persistent workers read at each epoch's start; and the batch size, so a worker
        # assembles each sample straight into its slot of the batch tensor
        self.control: Any = None
        self.batch_size: int | None = None
        plan = plan_split(settings, data, split, self.stream_plan.locate, self._ready)
        if data.normalize and stats is None:
            stats = stream_stats(
                settings, data, cache_dir=root, cache_bytes=budget,
                prefetch_bytes=prefetch_bytes,
                train=(self, plan) if split == "train" else None,
            )  # fmt: skip
        self.inner = StoreDataset(
            data, split, settings, stats=stats, transforms=transforms, plan=plan
        )
        self.needs = [self._groups_of(i) for i in range(len(self.inner))]
        self.components = components(self.needs)

    # ------------------------------------------------------------------ what samples need
    def _groups_of(self, index: int) -> list[RowGroup]:
        s = self.inner.plan.samples[index]
        found = (self.stream_plan.group_of(lf.path) for lf in s.files.values())
        return sorted({g for g in found if g is not None}, key=lambda g: (g.sha256, g.rg))

    def _wanted(self, g: RowGroup) -> dict[str, str]:
        return self.stream_plan.groups[g]

    def _ready(self, path: Path) -> None:
        """Fetch the row group of one located file now (the channel probe, statistics)."""
        g = self.stream_plan.group_of(path)
        if g is not None:
            self._fetch_now([g])

    def _fetch_now(self, groups: list[RowGroup]) -> None:
        from ..stream.fetch import Prefetcher

        pf = Prefetcher(
            self.settings, self.stream_plan, self.cache, groups, self.prefetch_bytes, self._wanted
        ).start()
        try:
            for g in groups:
                pf.wait(g)
        finally:
            pf.close()

    # ------------------------------------------------------------------ the stream
    @property
    def channel_names(self) -> list[str]:
        return self.inner.channel_names

    @property
    def tile_ids(self) -> list[str]:
        return self.inner.tile_ids

    def describe(self) -> str:
        """One line for people: what this split streams and where the cache is."""
        from ..stream.cache import gib

        p = self.stream_plan
        held = self.cache.index.total()
        return (
            f"streaming the {self.split} split from the Hub: {len(self)} samples, "
            f"{len(p.groups)} row groups ({gib(p.total_bytes)}), {len(p.local)} tiles read from "
            f"the store; cache {self.cache.root} ({gib(held)} held, budget "
            f"{gib(self.cache.budget)})"
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _position(self) -> tuple[int, int, int, int]:
        from .exported import dist_position

        rank, world = dist_position()
        if self.rank is not None:
            rank, world = self.rank, self.world_size or 1
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return rank, world, worker, workers

    def share_order(
        self, rank: int, world: int, worker: int, workers: int, epoch: int | None = None
    ) -> list[int]:
        from ..stream.order import share_order

        return share_order(
            self.components, seed=self.seed, shuffle=self.shuffle,
            epoch=self.epoch if epoch is None else epoch,
            buffer=self.shuffle_buffer, rank=rank, world=world, worker=worker, workers=workers,
        )  # fmt: skip

    def __len__(self) -> int:
        """This rank's samples per epoch (all of them when not distributed)."""
        from ..stream.order import rank_samples

        rank, world, _, _ = self._position()
        return rank_samples(len(self.inner), rank, world)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from ..stream.fetch import Prefetcher

        rank, world, worker, workers = self._position()
        epoch, skip = self.epoch, 0
        if self.control is not None:  # a StreamLoader's: this epoch and where to start
            epoch, skip = int(self.control[0]), int(self.control[1 + worker])
        order = self.share_order(rank, world, worker, workers, epoch)[skip:]
        first: list[RowGroup] = []
        seen: set[RowGroup] = set()
        left: dict[str, int] = {}
        for i in order:
            for g in self.needs[i]:
                left[g.key] = left.get(g.key, 0) + 1
                if g not in seen:
                    seen.add(g)
                    first.append(g)
        pf = Prefetcher(
            self.settings, self.stream_plan, self.cache, first, self.prefetch_bytes, self._wanted
        )
        pf.pin(set(left))  # row groups this share still needs are never evicted by it
        pf.start()
        slots = _Slots(self, len(order))
        try:
            for pos, i in enumerate(order):
                sample = self._one(pf, i, slots, pos)
                for g in self.needs[i]:
                    left[g.key] -= 1
                    if not left[g.key]:
                        pf.unpin(g.key)
                if sample is not None:
                    slots.taken()
                    yield sample
        finally:
            pf.close()

    def _one(self, pf: Any, index: int, slots: _Slots, pos: int) -> dict[str, Any] | None:
        """One sample, or None (counted, with why) when a row group it needs failed."""
        from .threads import loader_threads

        try:
            for g in self.needs[index]:
                pf.wait(g)
            image, target = slots.slot(pos)
            try:
                with loader_threads():
                    return self.inner._item(index, image, target)
            except TileError:  # a file evicted by another process meanwhile: fetch it again
                self._fetch_now(self.needs[index])
                with loader_threads():
                    return self.inner._item(index, image, target)
        except (StreamError, TileError) as exc:
            self._fail(self.inner.plan.samples[index].tile_id, exc.message)
            return None

    def skipped(self) -> int:
        """Samples skipped so far by every process streaming this dataset (its failures file)."""
        try:
            with self.failures_path.open() as fh:
                return sum(1 for line in fh if line.strip())
        except OSError:
            return 0

    def _fail(self, tile: str, reason: str) -> None:
        self.failures.append((tile, reason))
        self.failures_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"tile_id": tile, "split": self.split, "reason": reason}) + "\n"
        fd = os.open(self.failures_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class _Slots:
    """The batch tensors a worker's samples are assembled into, as the store dataset's batched
    fetch does: the k-th sample of each batch is written into slot k, so ``threads.collate``
    passes the batch on as it is. A sample that is skipped leaves the batch short of its
    tensor's size: collate then stacks copies, the values are the same."""

    def __init__(self, stream: M3LEOStream, total: int) -> None:
        self.stream, self.total = stream, total
        self.size = stream.batch_size or 0
        self.k = 0
        self.images: Any = None
        self.targets: Any = None

    def slot(self, pos: int) -> tuple[Any, Any]:
        if self.size <= 1:
            return None, None
        if self.k == 0:
            from .threads import batch_tensor, loader_threads

            a = self.stream.inner.assembler
            n = min(self.size, self.total - pos)
            with loader_threads(batch=True):
                size = self.stream.inner.data.size
                self.images = batch_tensor((n, a.num_channels, size, size))
                slot = a.target_slot()
                self.targets = None if slot is None else batch_tensor((n, *slot[0]), slot[1])
        if self.k >= self.images.shape[0]:
            return None, None
        target = None if self.targets is None else self.targets[self.k]
        return self.images[self.k], target

    def taken(self) -> None:
        if self.size > 1:
            self.k = (self.k + 1) % self.size


def stream_stats(
    settings: Settings,
    data: DataSpec,
    *,
    train: tuple[M3LEOStream, SplitPlan] | None = None,
    progress: Any = None,
    **stream: Any,
) -> RunStats:
    """The train split's statistics for a streamed run: the saved ones when they exist, else
    computed from the streamed tiles as ``m3leo stats --bands`` would compute them from the
    store (the whole train split is fetched first; it then sits in the cache for epoch 1)."""
    from ..errors import StatsNotFoundError
    from .normstats import resolve_stats

    if train is None:  # ``train``: the train split's stream and plan, when being built
        other = M3LEOStream(replace(data, normalize=False), "train", settings, **stream)
        train = other, other.inner.plan
    stream_of, plan = train
    locate = stream_of.stream_plan.locate
    extra = {} if progress is None else {"progress": progress}
    try:
        return resolve_stats(settings, data, plan, compute=False, locate=locate, **extra)
    except StatsNotFoundError:
        stream_of._fetch_now(sorted(stream_of.stream_plan.groups, key=lambda g: g.key))
        return resolve_stats(settings, data, plan, locate=locate, **extra)


class StreamLoader(torch.utils.data.DataLoader):
    """A DataLoader over an :class:`M3LEOStream` that can stop and resume mid-epoch.

    Each ``iter()`` is one epoch (the dataset's ``set_epoch`` is called with it). The loader
    counts the samples it delivered per share (a sample's tile id names its share), so
    ``state_dict()`` says exactly how far each (rank, worker) got, and after
    ``load_state_dict()`` the next epoch delivers exactly the samples not yet seen. Workers are
    kept (persistent) and read the epoch and their resume points, at each epoch's start, from a
    small tensor in shared memory the loader writes.
    """

    def __init__(self, dataset: M3LEOStream, **kwargs: Any) -> None:
        workers = int(kwargs.get("num_workers", 0))
        kwargs.setdefault("persistent_workers", workers > 0)
        dataset.control = torch.zeros(1 + max(1, workers), dtype=torch.int64).share_memory_()
        dataset.batch_size = kwargs.get("batch_size", 1)
        super().__init__(dataset, **kwargs)
        self.stream = dataset
        self._epoch = 0
        self._consumed: dict[int, int] = {}
        self._started = False

    def _owners(self, rank: int, world: int) -> dict[str, int]:
        """Tile id -> the share (this rank's worker) that streams it this epoch."""
        from ..stream.order import share_index

        workers = max(1, self.num_workers)
        ids = self.stream.tile_ids
        return {
            ids[i]: share_index(rank, world, w, workers)
            for w in range(workers)
            for i in self.stream.share_order(rank, world, w, workers)
        }

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        from ..stream.order import share_index

        if self._started:  # a new epoch after a finished (or abandoned) one
            self._epoch += 1
            self._consumed = {}
        self._started = True
        self.stream.set_epoch(self._epoch)
        rank, world, _, _ = self.stream._position()
        owner = self._owners(rank, world)
        workers = max(1, self.num_workers)
        control = self.stream.control  # read by each worker as the epoch starts
        control[0] = self._epoch
        for w in range(workers):
            control[1 + w] = self._consumed.get(share_index(rank, world, w, workers), 0)
        skipped = self.stream.skipped()
        for batch in super().__iter__():
            for tile in batch["tile_id"]:
                share = owner[tile]
                self._consumed[share] = self._consumed.get(share, 0) + 1
            yield batch
        skipped = self.stream.skipped() - skipped
        if skipped:  # noted by the workers: said here, where the user is
            warnings.warn(
                f"{skipped} samples of the {self.stream.split} split could not be streamed "
                f"this epoch and were skipped; why: {self.stream.failures_path}",
                RuntimeWarning,
                stacklevel=2,
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "epoch": self._epoch,
            "seed": self.stream.seed,
            "world_size": self.stream._position()[1],
            "num_workers": max(1, self.num_workers),
            "consumed": {str(k): v for k, v in sorted(self._consumed.items())},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        now = (self.stream.seed, self.stream._position()[1], max(1, self.num_workers))
        then = (state.get("seed"), state.get("world_size"), state.get("num_workers"))
        if now != then:
            raise StreamError(
                f"the saved stream position was taken with seed, ranks, workers = {then}, "
                f"this run has {now}: the remaining samples would not be the same",
                "resume with the same seed, devices and loader.num_workers",
            )
        self._epoch = int(state["epoch"])
        self._consumed = {int(k): int(v) for k, v in state.get("consumed", {}).items()}
        self._started = False
