"""The full edition: selected tiles out of Parquet shards, into the same layout as the miniset.

``download_full`` groups the selected tiles by shard, plans each shard (whole or ranges, see
``shardplan``), then per shard, in ``workers`` threads: fetch (whole shards through the
download engine, verified against their sha256 and resumable; ranges through ``HttpRanges``),
stream-unpack (``unpack``), record each file's size and sha256 for ``verify``, and drop the
shard unless ``keep_shards``. ``unpack_files`` does the same from shard files already on disk.

State under ``<data_dir>/.m3leo/``: ``shards/`` (shard cache), ``shard-index/`` (footers and
row paths by shard sha256), ``unpacked/<edition>/<region>/*.json`` (recorded checksums, see
``unpacked``, which also holds ``unpack_files``).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import spec
from ..config import Settings
from ..errors import (
    DiskFullError,
    HubConnectionError,
    M3leoError,
    OfflineError,
    ShardError,
    UnsafePathError,
)
from ..fetch.plan import DownloadPlan, finish
from ..fetch.plan import check_space as _check_space
from ..fetch.runner import DownloadSummary
from ..hub.client import HubClient, resolve_url
from ..progress import ProgressCallback, ProgressEvent, no_progress
from ..selection import Selection
from ..store.layout import Store, safe_join
from .index import RangeFile, RangeNotHonoredError, ShardIndex, read_footer, save_index
from .plan import HttpRanges, ShardTask, check_fetch_mode, choose, row_group_batches
from .unpack import RowRules, UnpackReport, open_local, unpack_parquet
from .unpacked import (
    UnpackSummary,
    read_sidecar,
    record_unpacked,
    recorded_checksums,
    sidecar_path,
    unpack_files,
)

__all__ = [
    "FullDownloadPlan",
    "UnpackSummary",
    "download_full",
    "recorded_checksums",
    "unpack_files",
]

_FATAL = (DiskFullError, HubConnectionError, OfflineError)


@dataclass
class FullDownloadPlan(DownloadPlan):
    """A download plan with the per-shard decisions (whole or ranges, row groups, bytes)."""

    shards: list[dict[str, Any]] = field(default_factory=list)
    absent: int = 0  # listed tiles the (cached) shard index shows their shard does not hold

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["shards"] = self.shards
        return d


@dataclass
class _Run:
    settings: Settings
    store: Store
    client: HubClient
    keep_shards: bool
    progress: ProgressCallback
    stop: threading.Event = field(default_factory=threading.Event)

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


def _tasks(
    settings: Settings, selection: Selection, progress: ProgressCallback
) -> tuple[list[ShardTask], list[tuple[str, str]], list[dict[str, Any]]]:
    """Shard tasks for the selection, tiles no shard holds, and the aux rows to fetch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..catalog import refresh as catalog

    catalog.ensure_manifest(settings, "full", selection.region_names, progress=progress)
    tiles = catalog.select(settings, selection, kinds=("tile",))
    rows = tiles.select(["region", "datakind", "tile_id", "path", "shard", "commit"]).to_pylist()
    regions = sorted({r["region"] for r in rows})
    man = catalog.load_manifest(settings, "full", regions)
    shard_rows = man.filter(pc.equal(man["kind"], "shard")).to_pylist()
    shards = {(r["region"], r["path"]): r for r in shard_rows}
    aux_wanted = {(g, p) for g in regions for p in _aux_paths(g)}
    aux = [
        r
        for r in man.filter(pc.equal(man["kind"], "aux")).to_pylist()
        if (r["region"], r["path"]) in aux_wanted
    ]
    needed = sorted({r["shard"] for r in rows if r["shard"]})
    tile_rows = man.filter(
        pc.and_(
            pc.equal(man["kind"], "tile"), pc.is_in(man["shard"], pa.array(needed, pa.string()))
        )
    ).select(["region", "tile_id", "shard"])
    known: dict[tuple[str, str], set[str]] = {}
    for r in tile_rows.to_pylist():
        known.setdefault((r["region"], r["shard"]), set()).add(r["tile_id"])
    store = Store(settings.data_dir)
    recorded: dict[str, tuple[int, str]] = {}
    for region, shard in {(r["region"], r["shard"]) for r in rows if r["shard"]}:
        read_sidecar(sidecar_path(store, region, shard), recorded)  # only the shards involved
    tasks: dict[tuple[str, str], ShardTask] = {}
    orphans: list[tuple[str, str]] = []
    for r in rows:
        label = f"full/{r['region']}/{r['path']}"
        srow = shards.get((r["region"], r["shard"])) if r["shard"] else None
        if srow is None or not srow.get("checksum") or srow.get("size") is None:
            orphans.append((label, "no shard in the repo holds this tile (check _parquet.csv)"))
            continue
        key = (r["region"], r["shard"])
        task = tasks.get(key)
        if task is None:
            task = tasks[key] = ShardTask(
                region=r["region"],
                shard=r["shard"],
                datakind=r["datakind"],
                size=int(srow["size"]),
                sha256=bytes(srow["checksum"]).hex(),
                commit=srow["commit"],
                wanted={},
                known=frozenset(known.get(key, ())),
            )
        rec = recorded.get(r["path"])
        try:
            dest = store.local_path("full", r["region"], r["path"])
            safe_join(store.state_dir / "shards", r["shard"])
        except UnsafePathError as exc:
            orphans.append((label, exc.message))
            continue
        if rec is not None and dest.is_file() and dest.stat().st_size == rec[0]:
            task.present += 1
        else:
            task.wanted[r["tile_id"]] = r["path"]
    return list(tasks.values()), orphans, aux


def _as_download(progress: ProgressCallback) -> ProgressCallback:
    """Unpacked files count as the download's finished files (one bar for the whole run)."""

    def forward(event: ProgressEvent) -> None:
        if event.kind == "advance" and event.phase == "unpack":
            event = ProgressEvent("advance", "download", files=event.files, extra=event.extra)
        progress(event)

    return forward


def _aux_paths(region: str) -> tuple[str, ...]:
    reg = spec.get_region(region)
    return (reg.split_csv("full"), reg.parquet_csv())


def download_full(
    settings: Settings,
    selection: Selection,
    *,
    client: HubClient,
    workers: int,
    dry_run: bool = False,
    progress: ProgressCallback = no_progress,
    keep_shards: bool | None = None,
    fetch: str | None = None,
    check_space: bool = True,
    wait: bool = False,
    **_: Any,
) -> DownloadSummary | FullDownloadPlan:
    """Get the selected full-edition tiles into ``<data_dir>/full/<region>/`` (see module doc)."""
    from ..fetch.plan import build_jobs
    from ..fetch.runner import run_jobs
    from ..store.lock import store_lock

    fetch = check_fetch_mode(fetch or settings.fetch)
    keep_shards = settings.keep_shards if keep_shards is None else keep_shards
    t0 = time.monotonic()
    store = Store(settings.data_dir)
    run = _Run(settings, store, client, keep_shards, _as_download(progress))
    tasks, orphans, aux = _tasks(settings, selection, progress)
    aux_jobs, refused = build_jobs(settings, aux)
    planned = _plan_all(run, tasks, fetch, workers)
    plan = _to_plan(settings, selection, tasks, orphans + refused)
    if dry_run:
        return plan
    if check_space:
        biggest = max((t.size for t in tasks if t.mode == "whole"), default=0)
        _check_space(settings.data_dir, plan.to_fetch_bytes + biggest * min(workers, len(tasks)))

    def on_wait(holder: str) -> None:
        progress(ProgressEvent("message", "lock", message=f"waiting for the lock ({holder})"))

    with store_lock(store, wait=wait, on_wait=on_wait):
        summary = run_jobs(client, aux_jobs, workers=workers, progress=no_progress)
        summary.merge(planned)
        todo = [t for t in tasks if t.mode != "skip"]
        summary.skipped += sum(t.present for t in tasks)
        summary.absent += sum(len(t.absent) for t in tasks)
        progress(
            ProgressEvent(
                "start",
                "download",
                total_files=plan.to_fetch_files,
                total_bytes=plan.to_fetch_bytes,
            )
        )
        try:
            _execute(run, todo, workers, summary)
        finally:
            progress(ProgressEvent("done", "download"))
    summary.seconds = time.monotonic() - t0
    finish(summary, store, orphans + refused)
    return summary


def _plan_all(run: _Run, tasks: list[ShardTask], fetch: str, workers: int) -> DownloadSummary:
    """Choose whole/ranges for every shard (footers fetched in parallel); index cost counted."""
    spent = DownloadSummary()
    if not tasks:
        return spent
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks)))) as pool:
        list(pool.map(lambda t: _choose_one(run, t, fetch), tasks))
    spent.bytes = sum(t.index_bytes for t in tasks)
    spent.requests = sum(t.index_requests for t in tasks)
    return spent


def _choose_one(run: _Run, task: ShardTask, fetch: str) -> None:
    try:
        task.reader = HttpRanges(run.client, run.url(task))
        choose(task, fetch, task.reader, run.index_dir)
    except RangeNotHonoredError:
        task.mode, task.bytes, task.requests = "whole", task.size, 1
    except M3leoError as exc:
        if isinstance(exc, _FATAL):
            raise
        # an unreadable footer or path chunk: the verified whole shard decides
        run.progress(ProgressEvent("message", "plan", message=f"{task.shard}: {exc.message}"))
        task.mode, task.bytes, task.requests, task.index = "whole", task.size, 1, None


def _to_plan(
    settings: Settings,
    selection: Selection,
    tasks: list[ShardTask],
    refused: list[tuple[str, str]],
) -> FullDownloadPlan:
    plan = FullDownloadPlan("full", sorted({t.region for t in tasks}), refused=list(refused))
    plan.request_budget = settings.request_budget
    plan.window_seconds = settings.window_seconds
    for t in tasks:
        plan.files += len(t.wanted) + t.present
        plan.present_files += t.present
        plan.absent += len(t.absent)
        plan.to_fetch_files += len(t.wanted)
        plan.to_fetch_bytes += t.bytes if t.mode != "skip" else 0
        plan.requests += t.requests if t.mode != "skip" else 0
        plan.shards.append(t.to_dict())
    plan.bytes = plan.to_fetch_bytes
    return plan


def _execute(run: _Run, tasks: list[ShardTask], workers: int, summary: DownloadSummary) -> None:
    lock = threading.Lock()
    if not tasks:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks))))
    try:
        futures = {pool.submit(_run_task, run, t): t for t in tasks}
        for fut in as_completed(futures):
            part = fut.result()
            with lock:
                summary.merge(part)
    except BaseException:
        run.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_task(run: _Run, task: ShardTask) -> DownloadSummary:
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
            except M3leoError as exc:
                if isinstance(exc, _FATAL):
                    raise
                run.progress(
                    ProgressEvent(
                        "message",
                        "download",
                        message=f"{task.shard}: {exc.message}; fetching the whole shard instead",
                    )
                )
                (run.index_dir / f"{task.sha256}.json").unlink(missing_ok=True)
                task.mode = "whole"
                report = UnpackReport(source=task.shard, region=task.region)
        if task.mode == "whole":
            _unpack_whole(run, task, rules, report, out)
    except M3leoError as exc:
        if isinstance(exc, _FATAL):
            raise
        done = {f.path for f in report.written}
        for rel in sorted(task.wanted.values()):
            if rel not in done:
                out.failures.append((f"full/{task.region}/{rel}", exc.message))
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
    run: _Run, task: ShardTask, rules: RowRules, report: UnpackReport, out: DownloadSummary
) -> None:
    import pyarrow.parquet as pq

    idx = task.index
    assert idx is not None
    reader = task.reader or HttpRanges(run.client, run.url(task))

    def counted(start: int, end: int) -> bytes:
        data = reader(start, end)
        run.progress(ProgressEvent("advance", "download", bytes=len(data)))
        return data

    rf = RangeFile(counted, task.size, task.shard)
    batches = {b[0][0]: b for b in row_group_batches(idx, task.row_groups)}

    def before(rg: int) -> None:
        run.check_stop()
        if rg in batches:
            rf.drop()
            rf.prefetch(batches[rg][1])

    pf = pq.ParquetFile(
        rf,
        metadata=idx.metadata,
        pre_buffer=False,
        buffer_size=1 << 20,
        page_checksum_verification=True,  # Spark (parquet-mr >= 1.12) writes page CRCs
    )
    try:
        unpack_parquet(
            pf,
            run.store.region_dir("full", task.region),
            rules,
            source=task.shard,
            row_groups=task.row_groups,
            progress=run.progress,
            before_row_group=before,
            report=report,
        )
    finally:
        out.bytes += rf.fetched
        out.requests += rf.requests
        out.ranged_requests += rf.requests
        rf.drop()


def _unpack_whole(
    run: _Run, task: ShardTask, rules: RowRules, report: UnpackReport, out: DownloadSummary
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
    try:
        with open_local(dest) as pf:
            unpack_parquet(
                pf,
                run.store.region_dir("full", task.region),
                rules,
                source=task.shard,
                progress=run.progress,
                report=report,
                before_row_group=lambda rg: run.check_stop(),
                after_row_group=lambda rg, paths: rows.__setitem__(rg, paths),
            )
    except ShardError:
        # a kept shard is trusted by size on the next run: never keep one that failed
        dest.unlink(missing_ok=True)
        raise
    with open(dest, "rb") as fh:
        footer = read_footer(_file_reader(fh), task.size, task.shard)
    save_index(run.index_dir, ShardIndex(task.shard, task.size, footer, task.sha256, rows))
    if not run.keep_shards:
        dest.unlink(missing_ok=True)


def _file_reader(fh: Any) -> Any:
    def read(start: int, end: int) -> bytes:
        fh.seek(start)
        return bytes(fh.read(end - start + 1))

    return read
