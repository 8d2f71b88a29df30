"""Resolve-ahead: the content links of the next files, asked for while the workers fetch.

A file costs two round trips: the Hub's answer saying where its bytes are, and the content GET.
:class:`Ahead` hands the run's jobs to the workers and, on resolver threads, asks for the links
of the files they will take next, so a worker needs one round trip per file:

- **By the hundred** (default): two threads ask the Git LFS batch endpoint for
  :data:`~m3leo_cli.hub.lfsbatch.BATCH` files' links per request (one Hub request per hundred
  files instead of one per file, on the resolver quota too), one batch answered while the
  other is used. Links are asked for at most two batches ahead, so a signed link is used
  seconds after it was issued.
- **File by file**, when batches are switched off (``lfs_batch = false``) or the Hub does not
  answer them: one resolver thread per worker asks for one ``302`` each, at most ``workers``
  ahead. When the Hub answers within ~5 ms (a mirror on the same network) they stop after their
  first 16 answers: there is no round trip worth hiding, only CPU to lose.

Either way a link is never asked for twice: a worker that takes a file whose link is being
asked for waits for that answer. A file without a link (not in a batch answer, an error) is
resolved by its worker, which meets the Hub's own error if there is one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import M3leoError
from ..hub.lfsbatch import BATCH, Want
from .transfer import FileJob

if TYPE_CHECKING:
    from ..hub.client import HubClient

BATCH_THREADS = 2  # batch resolvers: one answer in flight while the other batch is used
RTT_SAMPLES = 16  # resolves timed before deciding whether resolving ahead pays
NEAR_RTT = 0.005  # seconds: a Hub answering faster than this is not worth the extra threads


class Ahead:
    """The shared job iterator, with the Hub links of the next files asked for in advance."""

    def __init__(
        self, client: HubClient, it: Iterator[FileJob], depth: int, stop: Any, resolvers: bool
    ) -> None:
        """``resolvers``: whether resolver threads run (one worker gets none, nor batches)."""
        self.client, self.it, self.depth, self.stop = client, it, max(1, depth), stop
        self.cond = threading.Condition()
        self.queued: deque[FileJob] = deque()  # pulled from ``it``, not yet taken by a worker
        self.asking: dict[int, threading.Event] = {}  # id(job) -> set when its link is known
        self.rtts: list[float] = []  # the first resolves' round trips, seconds
        self.near = False  # the Hub answered within NEAR_RTT: resolving ahead does not pay
        self.batch = resolvers and bool(client.settings.lfs_batch)  # links by the hundred
        self.wake = threading.Event()  # set when batches stop, or the jobs run out
        self.ended = False  # the iterator is exhausted
        self.pulling = 0  # jobs a batch resolver took from ``it`` and has not queued yet

    def take(self) -> FileJob | None:
        """The next job for a worker (None at the end); waits for a resolve in flight."""
        with self.cond:
            while not (self.queued or self.stop.is_set()) and (
                self.pulling or (self.batch and not self.ended)
            ):
                self.cond.wait(0.25)  # the batch resolvers pull the jobs, in hundreds
            job = self.queued.popleft() if self.queued else self._next()
            if len(self.queued) == self._refill_at():  # room for the resolvers to ask again
                self.cond.notify_all()
            pending = self.asking.get(id(job)) if job is not None else None
        if pending is not None:
            pending.wait()
        return job

    def resolver(self, index: int = 0) -> None:
        """One resolver thread's loop (``index``: its number; batches use the first two)."""
        while not (self.stop.is_set() or self.ended):
            if self.batch and index >= BATCH_THREADS:
                self.wake.wait(0.25)  # needed only if the Hub refuses batches
            elif self.batch:
                try:
                    got = self._ask_batch()
                except Exception:  # never leave the workers waiting on a dead batch thread
                    got = None
                if got is None:  # no batches from this Hub: file by file from now on
                    self._stop_batches()
            elif self.near:
                return
            else:
                self._ask_one()

    # ------------------------------------------------------------------ one round
    def _ask_batch(self) -> int | None:
        """Pull up to BATCH jobs and ask for their links in one request; how many links came
        back (None: the Hub does not answer batches)."""
        with self.cond:
            while len(self.queued) + self.pulling > self._refill_at() and not self.stop.is_set():
                self.cond.wait(0.25)
            if self.stop.is_set():
                return 0
            pulled: list[FileJob] = []
            while len(pulled) < BATCH and (job := self._next()) is not None:
                pulled.append(job)
            self.pulling += len(pulled)
        event = threading.Event()
        wanted: list[FileJob] = []
        try:
            # a stat per file says which need a link: not while holding the lock every worker
            # takes its jobs under (queued only with their pending answer noted: asked once)
            wanted = [j for j in pulled if _worth_resolving(j)]
        finally:
            with self.cond:
                for j in wanted:
                    self.asking[id(j)] = event
                self.queued.extend(pulled)  # whatever happened: no pulled job is ever lost
                self.pulling -= len(pulled)
                self.cond.notify_all()
        try:
            if not wanted:
                return 0
            return self.client.prefetch_links(
                [Want(j.url, j.checksum.hex(), j.size) for j in wanted]
            )
        except M3leoError:
            return 0  # the workers' own requests report it
        finally:
            with self.cond:
                for j in wanted:
                    del self.asking[id(j)]
            event.set()

    def _stop_batches(self) -> None:
        with self.cond:
            self.batch = False
            self.cond.notify_all()
        self.wake.set()

    def _ask_one(self) -> None:
        with self.cond:
            while len(self.queued) >= self.depth and not self.stop.is_set():
                self.cond.wait(0.25)
            if self.stop.is_set():
                return
            job = self._next()
            if job is None:
                return
            self.queued.append(job)
            if not _worth_resolving(job):
                return
            event = self.asking[id(job)] = threading.Event()
        t0 = time.monotonic()
        try:
            self.client.prefetch_link(job.url)
        except Exception:
            pass  # best effort: the worker's own request reports any failure
        finally:
            with self.cond:
                del self.asking[id(job)]
                self._time(time.monotonic() - t0)
            event.set()

    def _refill_at(self) -> int:
        """The queue length at which a waiting resolver may pull again (caller holds cond)."""
        return self.depth_ahead - BATCH if self.batch else self.depth - 1

    @property
    def depth_ahead(self) -> int:
        """How many files batches may be ahead of the workers: two batches."""
        return max(self.depth, 2 * BATCH)

    def _next(self) -> FileJob | None:
        """The iterator's next job (caller holds ``cond``); marks the end for idle resolvers."""
        job = next(self.it, None)
        if job is None and not self.ended:
            self.ended = True
            self.cond.notify_all()
            self.wake.set()
        return job

    def _time(self, rtt: float) -> None:
        """Keep the first resolves' round trips; once there are enough, decide whether the Hub
        is near (a LAN mirror, a local server), where resolving ahead only takes CPU from the
        workers and the resolver threads stop."""
        if len(self.rtts) < RTT_SAMPLES:
            self.rtts.append(rtt)
            if len(self.rtts) == RTT_SAMPLES:
                self.near = sorted(self.rtts)[RTT_SAMPLES // 2] < NEAR_RTT


def _worth_resolving(job: FileJob) -> bool:
    """LFS files (sha256) answer the resolve with a 302; small git files with their bytes. A
    file in place needs no request, nor does a suspect one until its re-hash says so (most are
    fine: the worker resolves the others itself)."""
    if job.checksum_kind != "sha256":
        return False
    try:
        return job.dest.stat().st_size != job.size
    except OSError:
        return True
