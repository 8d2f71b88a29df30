"""How many transfers run at once: ``--workers``, or, when the user chose none, what pays.

Sixteen transfers keep two cores busy against a Hub next door, but on a distant one each
transfer spends most of its time waiting for a round trip: at 20 ms per request, sixteen
workers fetch ~570 small files/s and thirty-two ~860 (docs/benchmarks.md). More transfers
help only while the run is latency-bound; once the CPU is the limit they cost a little.

:class:`Concurrency` is a gate the workers pass to start a transfer. With a fixed limit (the
user's ``--workers``, ``M3LEO_WORKERS`` or config) it is a plain semaphore. Adaptive (the
default for miniset downloads), it starts at ``start`` and measures, over windows of at least
:data:`WINDOW_S` and twice the limit in files, which share of the transfers' time went to
waiting for answers (request sent to headers back). While that share is at least
:data:`WAITING` the transfers are latency-bound and the limit doubles; once it is lower, the
answers are not what they wait for (the CPU, the disk or the link is) and the limit stays. It
never exceeds ``most`` (:data:`MOST`, shared among a run's processes). Round trips, unlike bytes
or files per second, do not change with the mix of file sizes a run goes through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

WAITING = 0.7  # transfers double while they spend this share of their time waiting for answers
WINDOW_S = 1.0  # shortest measuring window, seconds
MOST = 64  # adaptive runs never start more transfers at once than this


class Concurrency:
    """A gate with a limit that may grow (see the module docstring)."""

    def __init__(
        self,
        start: int,
        most: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = max(1, start)
        self.most = max(self.limit, most or self.limit)
        self.adaptive = self.most > self.limit
        self._clock = clock
        self._cond = threading.Condition()
        self._active = 0
        self._settled = not self.adaptive
        self._warm = self.limit  # completions skipped before measuring (new connections)
        self._start_window()

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for a free slot; False when ``stop`` is set first."""
        with self._cond:
            while self._active >= self.limit:
                if stop.is_set():
                    return False
                self._cond.wait(0.25)
            self._active += 1
            return True

    def release(self, waited: float = 0.0, took: float = 0.0) -> None:
        """A transfer ended after ``took`` seconds, ``waited`` of them waiting for answers
        (both 0: no transfer); perhaps raise the limit."""
        with self._cond:
            self._active -= 1
            before = self.limit
            if not self._settled and took > 0:
                self._count(waited, took)
            if self.limit > before:
                self._cond.notify_all()  # new slots: every waiting worker may start
            else:
                self._cond.notify()  # one slot: one worker (the idle ones stay asleep)

    # ------------------------------------------------------------------ the climb
    def _count(self, waited: float, took: float) -> None:
        if self._warm > 0:
            self._warm -= 1
            if self._warm == 0:
                self._start_window()
            return
        self._files += 1
        self._waited += waited
        self._took += took
        if self._clock() - self._t0 < WINDOW_S or self._files < 2 * self.limit:
            return
        waiting = self._waited / self._took if self._took > 0 else 0.0
        if waiting < WAITING or self.limit >= self.most:
            self._settled = True  # not waiting on answers: more transfers would share the CPU
            return
        before, self.limit = self.limit, min(self.most, self.limit * 2)
        self._warm = self.limit - before  # the new transfers open their connections first
        self._start_window()

    def _start_window(self) -> None:
        self._t0, self._files = self._clock(), 0
        self._waited = self._took = 0.0
