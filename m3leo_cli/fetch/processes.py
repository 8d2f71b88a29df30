"""One run's files spread over a process per core.

A download is CPU-bound in the client (HTTP/1.1 parsing and hashing in one Python process: see
docs/benchmarks.md), so a selection of many files is dealt out to ``processes`` child processes,
each with its own Hub client, an equal share of the Hub budgets and the same :func:`run_jobs`.
Children send their progress and each finished file back through a queue and their summary at
the end; the parent merges them, so callers see one run. A child dies with its parent
(``PR_SET_PDEATHSIG`` on Linux) and stops when the parent is gone, so a killed run never leaves
writers behind that the next run's store lock cannot see.

Children are forked where that is safe (Linux, and this process runs no other Python thread
whose locks a child could inherit held): a fork costs milliseconds where a fresh interpreter
costs ~0.2 s of imports, which is what lets two processes pay off from a few hundred files.
Elsewhere they are spawned.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..config import Settings
from ..errors import M3leoError, unit_reason
from ..progress import ProgressCallback, ProgressEvent, no_progress
from .runner import DownloadSummary
from .transfer import FileJob

# below this a child's start costs more than it saves (docs/benchmarks.md): a forked child
# (milliseconds) pays off from a few hundred files, a spawned one (~0.2 s, a fresh interpreter
# importing the package) from about a thousand
MIN_FILES_PER_PROCESS = {"fork": 200, "spawn": 512}
MIN_THREADS_PER_PROCESS = 4  # fewer, and a process's threads cannot hide its round trips
OUTBOX_SIZE = 256  # a child's progress and file messages travel to the parent this many
OUTBOX_SECONDS = 0.1  # or this often (a bar redrawn ten times a second sees them all)


def plan_processes(settings: Settings, to_fetch: int, workers: int) -> int:
    """How many processes a run of ``to_fetch`` files over ``workers`` transfers gets (1: this
    process only): the ``processes`` setting, else the cores this process may run on (a
    cluster job's share, not the node's count), each with a few transfers at least."""
    if settings.processes is not None:
        wanted = settings.processes
    else:
        wanted = min(usable_cores(), max(1, workers // MIN_THREADS_PER_PROCESS))
    return max(1, min(wanted, to_fetch // MIN_FILES_PER_PROCESS[start_method()]))


def start_method() -> str:
    """ "fork" on Linux while no other Python thread runs (one could hold a lock, of the console
    or a logger, that the child would inherit held forever), else "spawn". macOS is spawned:
    its system libraries are not safe to use in a forked child."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity, which Slurm and taskset set)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS has no sched_getaffinity
        return os.cpu_count() or 1


def run_jobs_processes(
    settings: Settings,
    jobs: Sequence[FileJob],
    *,
    processes: int,
    workers: int,
    progress: ProgressCallback = no_progress,
    on_file: Callable[[FileJob, str], None] | None = None,
    most: int | None = None,
) -> DownloadSummary:
    """Like :func:`~.runner.run_jobs` over ``processes`` child processes (every n-th job each)."""
    ctx: Any = multiprocessing.get_context(start_method())
    channel: Any = ctx.Queue()
    budgets = settings.budgets
    share = dataclasses.replace(
        settings,
        requests_per_window=max(1, budgets["resolvers"] // processes),
        api_per_window=max(1, budgets["api"] // processes),
    )
    threads = max(1, -(-workers // processes))
    share_most = -(-most // processes) if most else None  # adaptive: each child climbs to its share
    children = [
        ctx.Process(
            target=_child,
            args=(
                share,
                [(i, jobs[i]) for i in range(k, len(jobs), processes)],
                threads,
                channel,
                k,
                share_most,
            ),  # fmt: skip
            name=f"m3leo-dl-proc-{k}",
            daemon=True,
        )
        for k in range(processes)
    ]
    t0 = time.monotonic()
    total_bytes = sum(j.size for j in jobs)
    progress(ProgressEvent("start", "download", total_files=len(jobs), total_bytes=total_bytes))
    summary = DownloadSummary()
    for child in children:
        child.start()
    done: set[int] = set()
    error: BaseException | None = None
    try:
        while len(done) < processes:
            try:
                kind, a, b = channel.get(timeout=0.5)
            except queue_mod.Empty:
                for k, child in enumerate(children):
                    if k not in done and not child.is_alive() and child.exitcode not in (0, None):
                        done.add(k)
                        error = error or M3leoError(
                            f"a download process died (exit code {child.exitcode})",
                            "re-run the same command: finished files are kept and parts resume",
                        )
                continue
            if kind == "batch":
                for item in b:
                    _deliver(item, jobs, progress, on_file)
            elif kind == "done":
                summary.merge(b)
                done.add(a)
            elif kind == "error":
                done.add(a)
                error = error or b
                _stop(children, done)
            elif kind == "interrupted":
                done.add(a)
                error = error or KeyboardInterrupt()
    except KeyboardInterrupt:  # the children got the same Ctrl-C: let them keep their parts
        _join(children, 10.0)
        raise
    _join(children, 30.0)
    summary.seconds = time.monotonic() - t0
    progress(ProgressEvent("done", "download"))
    if error is not None:
        raise error
    return summary


def _deliver(
    item: tuple,
    jobs: Sequence[FileJob],
    progress: ProgressCallback,
    on_file: Callable[[FileJob, str], None] | None,
) -> None:
    """One message from a child's batch: a progress event, or a file's outcome."""
    kind, a, b = item
    if kind == "event":
        progress(b)
    elif on_file is not None:
        on_file(jobs[a], b)


def _stop(children: list[Any], done: set[int]) -> None:
    """A fatal error (disk full, no connection) in one child: the others stop where they are
    (their parts resume next time)."""
    for k, child in enumerate(children):
        if k not in done and child.is_alive():
            child.terminate()


def _join(children: list[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.terminate()
            child.join(5)


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(
    settings: Settings,
    indexed: list[tuple[int, FileJob]],
    workers: int,
    channel: Any,
    k: int,
    most: int | None = None,
) -> None:
    _die_with_parent()
    parent = os.getppid()
    if parent == 1:  # the parent died before the line above took effect
        return
    from ..hub.client import HubClient
    from .runner import run_jobs

    where = {id(job): i for i, job in indexed}
    outbox = _Outbox(channel)

    def progress(event: ProgressEvent) -> None:
        if event.kind == "advance":  # start/done are the parent's
            outbox.put(("event", k, event))
        elif event.kind == "message":  # a failure or a warning: shown now
            outbox.put(("event", k, event), now=True)

    def on_file(job: FileJob, outcome: str) -> None:
        outbox.put(("file", where[id(job)], outcome))

    try:
        with HubClient(settings) as client:
            jobs = [job for _, job in indexed]
            summary = run_jobs(
                client, jobs, workers=workers, progress=progress, on_file=on_file, most=most
            )
        outbox.flush()
        channel.put(("done", k, summary))
    except KeyboardInterrupt:
        outbox.flush()
        channel.put(("interrupted", k, None))
    except M3leoError as exc:  # pickles as itself (M3leoError.__reduce__)
        outbox.flush()
        channel.put(("error", k, exc))
    except Exception as exc:  # never a child that dies without saying why
        outbox.flush()
        channel.put(("error", k, M3leoError(f"download process {k} failed: {unit_reason(exc)}")))


class _Outbox:
    """A child's messages to the parent, sent :data:`OUTBOX_SECONDS` or :data:`OUTBOX_SIZE` at a
    time: one queue message (a pickle, a pipe write, a wake-up of the queue's feeder thread)
    per file would cost the child's workers the GIL hand-offs of a few more system calls
    each."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.items: list[tuple] = []
        self.lock = threading.Lock()
        self.sent = time.monotonic()

    def put(self, item: tuple, now: bool = False) -> None:
        with self.lock:
            self.items.append(item)
            if not (
                now
                or len(self.items) >= OUTBOX_SIZE
                or time.monotonic() - self.sent >= OUTBOX_SECONDS
            ):
                return
            items, self.items = self.items, []
            self.sent = time.monotonic()
            self.channel.put(("batch", 0, items))

    def flush(self) -> None:
        with self.lock:
            items, self.items = self.items, []
        if items:
            self.channel.put(("batch", 0, items))
