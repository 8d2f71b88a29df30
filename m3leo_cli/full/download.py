"""The full edition: selected tiles out of Parquet shards, into the same layout as the miniset.

``download_full`` groups the selected tiles by shard, plans each shard (whole or ranges, see
``.plan``), then runs each shard task (``.shardjob``: fetch, stream-unpack, record) in
``workers`` threads, and drops the shard unless ``keep_shards``. ``unpack_files``
(``.unpacked``) does the same from shard files already on disk.

State under ``<data_dir>/.m3leo/``: ``shards/`` (shard cache), ``shard-index/`` (footers and
row paths by shard sha256), ``unpacked/<edition>/<region>/*.json`` (recorded checksums, see
``.unpacked``).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from .. import spec
from ..checksum import file_hexdigest
from ..config import Settings
from ..errors import (
    UnsafePathError,
    unit_reason,
)
from ..fetch.plan import DownloadPlan, finish
from ..fetch.plan import check_space as _check_space
from ..fetch.runner import DownloadSummary
from ..hub.client import HubClient
from ..progress import ProgressCallback, ProgressEvent, no_progress
from ..selection import Selection
from ..store.journal import RunJournal, Suspicion
from ..store.layout import Store, safe_join
from .index import RangeNotHonoredError
from .plan import HttpRanges, ShardTask, check_fetch_mode, choose
from .shardjob import FATAL, ShardRun, as_download, run_task, shard_unit
from .unpacked import (
    read_sidecar,
    sidecar_path,
)

__all__ = ["FullDownloadPlan", "download_full"]


@dataclass
class FullDownloadPlan(DownloadPlan):
    """A download plan with the per-shard decisions (whole or ranges, row groups, bytes)."""

    shards: list[dict[str, Any]] = field(default_factory=list)
    absent: int = 0  # listed tiles the (cached) shard index shows their shard does not hold

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["shards"] = self.shards
        return d


def _tasks(
    settings: Settings, selection: Selection, progress: ProgressCallback
) -> tuple[list[ShardTask], list[tuple[str, str]], list[dict[str, Any]]]:
    """Shard tasks for the selection, tiles no shard holds, and the aux rows to fetch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..catalog.info import load_manifest
    from ..catalog.query import select
    from ..catalog.refresh import ensure_manifest

    ensure_manifest(settings, "full", selection.region_names, progress=progress)
    tiles = select(settings, selection, kinds=("tile",))
    rows = tiles.select(["region", "datakind", "tile_id", "path", "shard", "commit"]).to_pylist()
    regions = sorted({r["region"] for r in rows})
    man = load_manifest(settings, "full", regions)
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
    suspect = Suspicion(store)
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
        if (
            rec is not None
            and dest.is_file()
            and dest.stat().st_size == rec[0]
            and (not suspect(dest) or file_hexdigest(dest) == rec[1])
        ):  # a file an unfinished run may not have synced is re-hashed before it counts
            task.present += 1
        else:
            task.wanted[r["tile_id"]] = r["path"]
    return list(tasks.values()), orphans, aux


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
    pool: Executor | None = None,
    **_: Any,
) -> DownloadSummary | FullDownloadPlan:
    """Get the selected full-edition tiles into ``<data_dir>/full/<region>/`` (see module doc).

    With a ``pool`` (the Dask engine's executor) each shard task runs on a worker with its own
    Hub client; the resolver budget is split evenly among the pool's workers, and this process
    holds the store lock for all of them.
    """
    from ..fetch.plan import build_jobs
    from ..fetch.runner import run_jobs
    from ..store.lock import store_lock

    fetch = check_fetch_mode(fetch or settings.fetch)
    keep_shards = settings.keep_shards if keep_shards is None else keep_shards
    t0 = time.monotonic()
    store = Store(settings.data_dir)
    run = ShardRun(settings, store, client, keep_shards, as_download(progress))
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

    journal = RunJournal(store) if pool is None else nullcontext()  # Dask workers: fsync each
    with store_lock(store, wait=wait, on_wait=on_wait), journal:
        run.durable = pool is not None
        summary = run_jobs(client, aux_jobs, workers=workers, progress=no_progress)
        summary.concurrency = 0  # shards run on their own pool: the aux files' count says nothing
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
            if pool is not None:
                _execute_on_pool(pool, run, todo, summary)
            else:
                _execute(run, todo, workers, summary)
        finally:
            progress(ProgressEvent("done", "download"))
    summary.seconds = time.monotonic() - t0
    finish(summary, store, orphans + refused)
    return summary


def _plan_all(run: ShardRun, tasks: list[ShardTask], fetch: str, workers: int) -> DownloadSummary:
    """Choose whole/ranges for every shard (footers fetched in parallel); index cost counted."""
    spent = DownloadSummary()
    if not tasks:
        return spent
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks)))) as pool:
        list(pool.map(lambda t: _choose_one(run, t, fetch), tasks))
    spent.bytes = sum(t.index_bytes for t in tasks)
    spent.requests = sum(t.index_requests for t in tasks)
    return spent


def _choose_one(run: ShardRun, task: ShardTask, fetch: str) -> None:
    try:
        task.reader = HttpRanges(run.client, run.url(task))
        choose(task, fetch, task.reader, run.index_dir)
    except RangeNotHonoredError:
        task.mode, task.bytes, task.requests = "whole", task.size, 1
    except Exception as exc:  # any failure to read the index: the verified whole shard decides
        if isinstance(exc, FATAL):
            raise
        run.progress(ProgressEvent("message", "plan", message=f"{task.shard}: {unit_reason(exc)}"))
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
    plan.hub_plan, plan.budgets = settings.hub_plan, settings.budgets
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


def _execute_on_pool(
    pool: Executor, run: ShardRun, tasks: list[ShardTask], summary: DownloadSummary
) -> None:
    """Shard tasks as pool tasks, each worker paced on its share of the request budget."""
    from dataclasses import replace

    n = max(1, getattr(pool, "workers", 1))
    budgets = run.settings.budgets
    worker_settings = replace(
        run.settings,
        requests_per_window=max(1, budgets["resolvers"] // n),
        api_per_window=max(1, budgets["api"] // n),
    )
    relay = getattr(pool, "progress_relay", None) or no_progress
    futures = [
        pool.submit(shard_unit, worker_settings, replace(t, reader=None), run.keep_shards, relay)
        for t in tasks
    ]
    try:
        for fut in as_completed(futures):
            summary.merge(fut.result())
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise


def _execute(run: ShardRun, tasks: list[ShardTask], workers: int, summary: DownloadSummary) -> None:
    lock = threading.Lock()
    if not tasks:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks))))
    try:
        futures = {pool.submit(run_task, run, t): t for t in tasks}
        for fut in as_completed(futures):
            part = fut.result()
            with lock:
                summary.merge(part)
    except BaseException:
        run.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
