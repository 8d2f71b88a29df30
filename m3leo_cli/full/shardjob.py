"""One shard task of a full-edition download: fetch it (whole or by ranges), unpack, record.

Whole shards go through the shared transfer (sha256-verified against the listing, resumable);
ranges through :class:`~.plan.HttpRanges` (Parquet page CRCs). Either way the rows stream into
the store row group by row group and each file's size and sha256 are recorded for ``verify``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import spec
from ..config import Settings
from ..errors import (
    DiskFullError,
    HubConnectionError,
    OfflineError,
    ShardError,
    unit_reason,
)
from ..fetch.runner import DownloadSummary
from ..hub.client import HubClient, resolve_url
from ..progress import ProgressCallback, ProgressEvent
from ..store.layout import Store, safe_join
from .index import ShardIndex, read_footer, save_index
from .plan import HttpRanges, ShardTask, row_group_batches
from .unpack import RowRules, UnpackReport, open_local, unpack_parquet
from .unpacked import (
    record_unpacked,
)

FATAL = (DiskFullError, HubConnectionError, OfflineError)
MAX_UNPACKING = 2  # concurrent unpacks: each holds a row group's pages and two writer threads
# bytes held at once across shard tasks by the row groups being decoded (a row group's column
# chunks are read and decompressed whole: ~2x its size). With 128 MiB row groups, as Spark
# writes them, one decodes at a time; peak RSS stays under 500 MB whatever the shard size
# (docs/benchmarks.md).
MEMORY_BUDGET = 320 << 20


class ByteBudget:
    """Bytes that may be held at once across threads; a request larger than the whole budget
    takes all of it (one such row group at a time, never a deadlock)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self.cond = threading.Condition()

    def acquire(self, n: int, stop: threading.Event) -> int:
        n = max(0, min(n, self.total))
        with self.cond:
            while self.free < n:
                if stop.is_set():
                    from ..fetch.transfer import Cancelled

                    raise Cancelled()
                self.cond.wait(0.25)
            self.free -= n
        return n

    def release(self, n: int) -> None:
        if n:
            with self.cond:
                self.free += n
                self.cond.notify_all()


def unpack_slots() -> int:
    """How many shards unpack at once: one per core, at most ``MAX_UNPACKING``."""
    import os

    return max(1, min(MAX_UNPACKING, os.cpu_count() or 1))


@dataclass
class ShardRun:
    settings: Settings
    store: Store
    client: HubClient
    keep_shards: bool
    progress: ProgressCallback
    stop: threading.Event = field(default_factory=threading.Event)
    durable: bool = True  # fsync each unpacked file (off inside a run journal, here only)
    # shards unpacked at once: downloads go on meanwhile, memory stays ~ this many row groups
    unpacking: threading.Semaphore = field(
        default_factory=lambda: threading.Semaphore(unpack_slots())
    )
    # row groups being decoded, across tasks
    memory: ByteBudget = field(default_factory=lambda: ByteBudget(MEMORY_BUDGET))

    def check_stop(self) -> None:
        """Between row groups: stop promptly on Ctrl-C or a fatal error elsewhere."""
        if self.stop.is_set():
            from ..fetch.transfer import Cancelled

            raise Cancelled()

    @property
    def index_dir(self) -> Path:
        return self.store.state_dir / "shard-index"

    def url(self, task: ShardTask) -> str:
        repo = spec.get_edition("full").repo_id(task.region)
        return resolve_url(self.settings.endpoint, repo, task.commit, task.shard)


def run_task(run: ShardRun, task: ShardTask) -> DownloadSummary:
    """Fetch and unpack one shard; every problem becomes a failure line, never an abort."""
    out = DownloadSummary()
    if run.stop.is_set():
        return out
    report = UnpackReport(source=task.shard, region=task.region)
    rules = RowRules(task.region, task.datakind, dict(task.wanted), task.known or None)
    try:
        if task.mode == "ranges":
            try:
                _unpack_ranges(run, task, rules, report, out)
            except Exception as exc:  # any failure of the ranges: the verified whole shard
                if isinstance(exc, FATAL):
                    raise
                why = unit_reason(exc)
                run.progress(
                    ProgressEvent(
                        "message",
                        "download",
                        message=f"{task.shard}: {why}; fetching the whole shard instead",
                    )
                )
                (run.index_dir / f"{task.sha256}.json").unlink(missing_ok=True)
                task.mode = "whole"
                report = UnpackReport(source=task.shard, region=task.region)
        if task.mode == "whole":
            _unpack_whole(run, task, rules, report, out)
    except Exception as exc:  # any exception: this shard's tiles fail, with the reason
        if isinstance(exc, FATAL):
            raise
        done = {f.path for f in report.written}
        why = unit_reason(exc)
        for rel in sorted(task.wanted.values()):
            if rel not in done:
                out.failures.append((f"full/{task.region}/{rel}", why))
    finally:
        record_unpacked(run.store, task.region, task.shard, report)
    out.downloaded += len(report.written)
    bad_rows = {p.rsplit("/", 1)[-1].split(".", 1)[0] for p, _ in report.refused}
    for tile in report.missing:
        if task.mode == "whole" and tile not in bad_rows:
            # the verified whole shard is the authority: the datakind does not publish it
            # (_unpack_whole saved its index: re-runs and verify remember it)
            out.absent += 1
            continue
        rel = task.wanted[tile]
        if task.mode == "ranges":  # the cached index named a row group without it: forget it
            (run.index_dir / f"{task.sha256}.json").unlink(missing_ok=True)
        out.failures.append(
            (f"full/{task.region}/{rel}", f"absent from its shard {task.shard} (the map lists it)")
        )
    for row_path, why in report.refused:
        out.failures.append((f"full/{task.region}/{task.shard}: row {row_path!r}", why))
    out.failed = len(out.failures)
    return out


def _unpack_ranges(
    run: ShardRun, task: ShardTask, rules: RowRules, report: UnpackReport, out: DownloadSummary
) -> None:
    """Fetch the wanted row groups' byte ranges into a sparse file of the shard's size, then
    decode that file like a whole shard.

    Decoding straight from the fetched bytes (a Python file object over them) cost ~300 MB per
    22 MB row group; from a local file it costs what a whole shard does. The bytes go from the
    socket to the page cache a MiB at a time (:meth:`HttpRanges.into`). Any
    byte the plan did not fetch reads as zeros and fails the page CRC: a ShardError, and the
    task falls back to the whole shard.
    """
    import os

    idx = task.index
    assert idx is not None
    reader: HttpRanges = task.reader or HttpRanges(run.client, run.url(task))
    batches = {b[0][0]: b for b in row_group_batches(idx, task.row_groups)}
    sparse = safe_join(run.store.state_dir / "shards" / task.region, task.shard + ".ranges")
    sparse.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(sparse, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    holding = {"unpacking": False}

    def advance(n: int) -> None:
        out.bytes += n
        run.progress(ProgressEvent("advance", "download", bytes=n))

    def fetch(spans: list[tuple[int, int]]) -> None:
        for start, end in spans:  # end exclusive; streamed to the sparse file, not held
            n = reader.into(fd, start, end - 1, advance)
            out.requests += n
            out.ranged_requests += n

    def before(rg: int) -> None:
        """Fetch the next batch of row groups, then decode it in one of the ``unpacking``
        slots (other tasks keep fetching meanwhile)."""
        run.check_stop()
        if rg in batches:
            if holding["unpacking"]:
                run.unpacking.release()
                holding["unpacking"] = False
            _release_memory()
            fetch(batches[rg][1])
            run.unpacking.acquire()
            holding["unpacking"] = True
        decoding.hold(idx.metadata, rg)

    decoding = _Decoding(run)
    try:
        os.ftruncate(fd, task.size)  # the shard's size, holes where nothing was fetched
        with open_local(sparse, metadata=idx.metadata) as pf:
            _decode(
                run, task, pf, rules, report, row_groups=task.row_groups,
                before_row_group=before, after_row_group=decoding.done,
            )  # fmt: skip
    finally:
        decoding.done()
        if holding["unpacking"]:
            run.unpacking.release()
        os.close(fd)
        sparse.unlink(missing_ok=True)
        _release_memory()


def _unpack_whole(
    run: ShardRun, task: ShardTask, rules: RowRules, report: UnpackReport, out: DownloadSummary
) -> None:
    from ..fetch.transfer import FileJob, Transfer

    dest = safe_join(run.store.state_dir / "shards" / task.region, task.shard)
    job = FileJob(
        run.url(task),
        dest,
        task.size,
        "sha256",
        bytes.fromhex(task.sha256),
        name=f"full/{task.region}/{task.shard}",
        # in a run journal the shard is not fsynced; one left by a run that never finished is
        # re-hashed before it is trusted (a kept shard is fsynced: later runs trust its size)
        durable=run.durable or run.keep_shards,
        suspect=not (run.durable or run.keep_shards),
    )
    t = Transfer(
        run.client,
        job,
        stop=run.stop,
        on_bytes=lambda n: run.progress(ProgressEvent("advance", "download", bytes=n)),
    )
    try:
        t.run()
    finally:
        out.bytes += t.transferred
        out.requests += t.requests
        out.ranged_requests += t.ranged
    rows: dict[int, list[str]] = {}
    decoding = _Decoding(run)

    def after(rg: int, paths: list[str]) -> None:
        rows[rg] = paths
        decoding.done()

    try:
        with run.unpacking, open_local(dest) as pf:

            def before(rg: int) -> None:
                run.check_stop()
                decoding.hold(pf.metadata, rg)

            _decode(run, task, pf, rules, report, before_row_group=before, after_row_group=after)
    except ShardError:
        # a kept shard is trusted by size on the next run: never keep one that failed
        dest.unlink(missing_ok=True)
        raise
    finally:
        decoding.done()
        _release_memory()
    with open(dest, "rb") as fh:
        footer = read_footer(_file_reader(fh), task.size, task.shard)
    save_index(run.index_dir, ShardIndex(task.shard, task.size, footer, task.sha256, rows))
    if not run.keep_shards:
        dest.unlink(missing_ok=True)


def _decode(
    run: ShardRun, task: ShardTask, pf: Any, rules: RowRules, report: UnpackReport, **hooks: Any
) -> None:
    """Unpack ``pf``'s rows into the store (whole or ranges: only the hooks differ)."""
    unpack_parquet(
        pf,
        run.store.region_dir("full", task.region),
        rules,
        source=task.shard,
        progress=run.progress,
        report=report,
        durable=run.durable,
        **hooks,
    )


class _Decoding:
    """The memory a row group takes while it is decoded, held in ``run.memory`` (see
    :data:`MEMORY_BUDGET`): its column chunks, read and decompressed."""

    def __init__(self, run: ShardRun) -> None:
        self.run, self.held = run, 0

    def hold(self, metadata: Any, rg: int) -> None:
        self.done()
        md = metadata.row_group(rg)
        size = md.total_byte_size + sum(
            md.column(i).total_compressed_size for i in range(md.num_columns)
        )
        self.held = self.run.memory.acquire(size, self.run.stop)

    def done(self, *_: Any) -> None:
        self.run.memory.release(self.held)
        self.held = 0


def _release_memory() -> None:
    """Hand the row group's pages back to the OS now: Arrow's allocator and glibc's per-thread
    arenas otherwise keep them, and a run's peak memory grew by about a shard per shard."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, looked up on first use (None elsewhere: musl, macOS)."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _file_reader(fh: Any) -> Any:
    def read(start: int, end: int) -> bytes:
        fh.seek(start)
        return bytes(fh.read(end - start + 1))

    return read


def shard_unit(
    settings: Settings,
    task: ShardTask,
    keep_shards: bool,
    progress: ProgressCallback,
) -> DownloadSummary:
    """One shard task on whatever process runs it (a Dask worker): its own Hub client, the
    same fetch, unpack and records as :func:`run_task` in a thread here."""
    with HubClient(settings) as client:
        run = ShardRun(
            settings, Store(settings.data_dir), client, keep_shards, as_download(progress)
        )
        if task.mode == "ranges":
            task.reader = HttpRanges(client, run.url(task))
        return run_task(run, task)


def as_download(progress: ProgressCallback) -> ProgressCallback:
    """Unpacked files count as the download's finished files (one bar for the whole run)."""

    def forward(event: ProgressEvent) -> None:
        if event.kind == "advance" and event.phase == "unpack":
            event = ProgressEvent("advance", "download", files=event.files, extra=event.extra)
        progress(event)

    return forward
