"""Run many :class:`~m3leo_cli.fetch.transfer.FileJob` s over one shared client.

Keep going, then tell.

Worker threads pull jobs from one shared iterator (memory does not grow with the number of
files), each file either lands verified at its final path or is recorded as a failure with
its reason, and the run ends with a :class:`DownloadSummary` and, when something failed, a
report file. Fatal conditions (disk full, no network, offline) stop every worker; Ctrl-C stops
them too and keeps every ``.part`` for the next run.

The workers take their jobs through :class:`~.ahead.Ahead`, which asks the Hub for the
content links of the next files while the workers fetch (resolve-ahead, see there).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DiskFullError, HubConnectionError, M3leoError, OfflineError, unit_reason
from ..progress import ProgressCallback, ProgressEvent, no_progress
from .ahead import BATCH_THREADS, Ahead
from .concurrency import Concurrency
from .transfer import Cancelled, FileJob, Transfer

if TYPE_CHECKING:
    from ..hub.client import HubClient

_FATAL = (DiskFullError, HubConnectionError, OfflineError)


@dataclass
class DownloadSummary:
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0  # body bytes received over the network
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    report_path: Path | None = None
    requests: int = 0  # file GETs sent (retries included, redirect hops not)
    ranged_requests: int = 0  # of which resumed with Range
    absent: int = 0  # full edition: listed tiles their datakind's shard does not hold
    concurrency: int = 0  # transfers at once at the end (adaptive runs: what paid)

    def to_dict(self) -> dict[str, object]:
        return {
            "downloaded": self.downloaded,
            "skipped": self.skipped,
            "failed": self.failed,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "ranged_requests": self.ranged_requests,
            "absent": self.absent,
            "concurrency": self.concurrency,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "report": str(self.report_path) if self.report_path else None,
        }

    def merge(self, other: DownloadSummary) -> None:
        self.downloaded += other.downloaded
        self.skipped += other.skipped
        self.failed += other.failed
        self.bytes += other.bytes
        self.failures += other.failures
        self.requests += other.requests
        self.ranged_requests += other.ranged_requests
        self.absent += other.absent
        self.concurrency += other.concurrency  # processes run side by side


def run_jobs(
    client: HubClient,
    jobs: Iterable[FileJob],
    *,
    workers: int,
    progress: ProgressCallback = no_progress,
    report_dir: Path | None = None,
    total_files: int | None = None,
    total_bytes: int | None = None,
    on_file: Callable[[FileJob, str], None] | None = None,
    most: int | None = None,
) -> DownloadSummary:
    """Fetch every job with ``workers`` threads; never stop at the first failure.

    ``most`` above ``workers``: the number of transfers at once adapts between the two
    (:mod:`~.concurrency`).

    ``on_file(job, outcome)`` is called after each file that was skipped or downloaded (the
    run journal's checkpoints and the clearing of suspects).
    """
    if total_files is None and isinstance(jobs, list | tuple):
        total_files = len(jobs)
        total_bytes = sum(j.size for j in jobs)
    summary = DownloadSummary()
    lock = threading.Lock()
    stop = threading.Event()
    fatal: list[BaseException] = []
    t0 = time.monotonic()
    progress(ProgressEvent("start", "download", total_files=total_files, total_bytes=total_bytes))

    def on_bytes(n: int) -> None:
        progress(ProgressEvent("advance", "download", bytes=n))

    def worker() -> None:
        try:
            work()
        except BaseException as exc:  # a worker never dies silently: the run stops, and says why
            with lock:
                fatal.append(
                    exc
                    if isinstance(exc, M3leoError | KeyboardInterrupt)
                    else M3leoError(f"a download worker failed: {unit_reason(exc)}")
                )
            stop.set()

    def work() -> None:
        while not stop.is_set() and gate.acquire(stop):
            waited = took = 0.0  # both 0: no transfer to count (the end, a cancel)
            try:
                job = ahead.take()
                if job is None:
                    return
                began = time.monotonic()
                t = Transfer(client, job, stop=stop, on_bytes=on_bytes)
                if not fetch_one(t):
                    return
                waited, took = t.waited, time.monotonic() - began
            finally:
                gate.release(waited, took)

    def fetch_one(t: Transfer) -> bool:
        """Run one transfer and count it; False when the worker must stop."""
        job = t.job
        try:
            outcome = t.run()
        except Cancelled:
            return False
        except _FATAL as exc:
            with lock:
                fatal.append(exc)
            stop.set()
            return False
        except Exception as exc:  # any failure is this file's, counted with its reason
            outcome = "failed"
            reason = unit_reason(exc)
            with lock:
                summary.failures.append((job.label, reason))
            progress(ProgressEvent("message", "download", message=f"failed: {reason}"))
        finally:
            with lock:
                summary.bytes += t.transferred
                summary.requests += t.requests
                summary.ranged_requests += t.ranged
        with lock:
            if outcome == "skipped":
                summary.skipped += 1
            elif outcome == "downloaded":
                summary.downloaded += 1
            else:
                summary.failed += 1
        if on_file is not None and outcome != "failed":
            on_file(job, outcome)
        skipped_bytes = job.size if outcome == "skipped" else 0
        progress(
            ProgressEvent(
                "advance", "download", files=1, bytes=skipped_bytes, extra={"outcome": outcome}
            )
        )
        return True

    nthreads = max(1, workers if total_files is None else min(workers, total_files))
    gate = Concurrency(nthreads, most if total_files is None else min(most or 0, total_files))
    # resolver threads: one per worker (file by file, which one worker cannot overlap with),
    # at least the two that ask for batches (links by the hundred spare the Hub, whatever the
    # number of workers)
    nresolvers = nthreads if nthreads > 1 else (BATCH_THREADS if client.settings.lfs_batch else 0)
    ahead = Ahead(client, iter(jobs), nthreads, stop, resolvers=nresolvers > 0)
    threads = [
        threading.Thread(target=worker, name=f"m3leo-dl-{i}", daemon=True)
        for i in range(gate.most)  # never more threads than files: each costs a start
    ]
    threads += [
        threading.Thread(target=ahead.resolver, args=(i,), name=f"m3leo-resolve-{i}", daemon=True)
        for i in range(nresolvers)
    ]
    for th in threads:
        th.start()
    try:
        for th in threads:
            while th.is_alive():
                th.join(0.25)
    except KeyboardInterrupt:
        stop.set()
        for th in threads:
            th.join()
        raise
    summary.seconds = time.monotonic() - t0
    summary.concurrency = gate.limit
    progress(ProgressEvent("done", "download"))
    if fatal:
        raise fatal[0]
    if summary.failures and report_dir is not None:
        summary.report_path = write_report(report_dir, summary)
    return summary


RATE_LIMITED_HINT = (
    "the server kept answering 429 (rate-limited): lower --workers, set "
    "M3LEO_REQUESTS_PER_WINDOW to its quota (the pacer then spreads the requests), or set "
    "HF_TOKEN for a higher quota; then re-run: finished files are kept"
)


def failure_hint(summary: DownloadSummary) -> str | None:
    """The hint for a run whose files failed, when their reasons say what fixes them (a rate
    limit is not a network problem); None: the general one (re-run, parts resume)."""
    reasons = [why for _, why in summary.failures]
    if reasons and sum("rate-limited" in why for why in reasons) * 2 >= len(reasons):
        return RATE_LIMITED_HINT
    if reasons and sum(why.startswith(_LOCAL) for why in reasons) * 2 >= len(reasons):
        return (
            "the store cannot write these files (the report lists them): move away a file or "
            "folder standing in their place, or make the folder writable, then re-run; "
            "--data-dir or M3LEO_DATA_DIR chooses another store"
        )
    return None


_LOCAL = ("Not a directory", "Is a directory", "Permission denied", "Read-only file system")


def write_report(report_dir: Path, summary: DownloadSummary) -> Path:
    """A JSON-lines file, one failed path and its reason per line, for scripts and people."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / time.strftime("download-%Y%m%dT%H%M%SZ.jsonl", time.gmtime())
    n = 1
    while path.exists():
        path = report_dir / time.strftime(f"download-%Y%m%dT%H%M%SZ-{n}.jsonl", time.gmtime())
        n += 1
    with path.open("w", encoding="utf-8") as fh:
        for p, reason in summary.failures:
            fh.write(json.dumps({"path": p, "reason": reason}) + "\n")
    return path
