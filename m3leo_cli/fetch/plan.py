"""``m3leo download``: from a selection to verified files in the store.

The plan comes from the manifest alone (no HEAD per file: it already knows every size and
checksum). The miniset edition maps one manifest row to one file; the full edition is handed to
``shards.download_full``, which uses the same engine (:func:`~m3leo_cli.fetch.runner.run_jobs`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import spec
from ..config import Settings
from ..errors import InsufficientSpaceError, UnsafePathError, UsageError
from ..hub.client import resolve_url
from ..progress import ProgressCallback, ProgressEvent, no_progress
from ..selection import Selection
from ..store.layout import Store
from .runner import DownloadSummary, run_jobs, write_report
from .transfer import FileJob, part_path

__all__ = [
    "DownloadPlan",
    "DownloadSummary",
    "FileJob",
    "build_jobs",
    "check_space",
    "download",
    "plan_jobs",
    "refresh_catalog",
    "resolve_url",
    "run_jobs",
    "selected_rows",
]

SPACE_MARGIN = 64 * 1024 * 1024  # keep this much free beyond the request


@dataclass
class DownloadPlan:
    """What a download would do, from the manifest and the local store only."""

    edition: str
    regions: list[str]
    files: int = 0  # selected files (tiles + aux)
    bytes: int = 0
    present_files: int = 0  # already at their final path
    present_bytes: int = 0
    partial_bytes: int = 0  # already in .part files (resumed, not re-fetched)
    to_fetch_files: int = 0
    to_fetch_bytes: int = 0
    requests: int = 0  # resolver requests the run needs (one per file to fetch)
    request_budget: int = 0
    window_seconds: float = 0.0
    pacing_seconds: float = 0.0  # minimum time the request budget imposes
    refused: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["refused"] = [{"path": p, "reason": r} for p, r in self.refused]
        return d


def build_jobs(
    settings: Settings, rows: Iterable[dict[str, Any]]
) -> tuple[list[FileJob], list[tuple[str, str]]]:
    """FileJobs for manifest rows (edition, region, path, size, checksum_kind, checksum, commit).

    Rows whose path escapes the store, or that lack a size or checksum, are refused and
    returned as (path, reason) instead of stopping the run.
    """
    store = Store(settings.data_dir)
    jobs: list[FileJob] = []
    refused: list[tuple[str, str]] = []
    for r in rows:
        path = r["path"]
        label = f"{r['edition']}/{r['region']}/{path}"
        try:
            dest = store.local_path(r["edition"], r["region"], path)
        except UnsafePathError as exc:
            refused.append((label, exc.message))
            continue
        if r.get("size") is None or not r.get("checksum") or not r.get("checksum_kind"):
            refused.append((label, "the manifest has no size or checksum for it"))
            continue
        repo = spec.get_edition(r["edition"]).repo_id(r["region"])
        jobs.append(
            FileJob(
                url=resolve_url(settings.endpoint, repo, r["commit"], path),
                dest=dest,
                size=int(r["size"]),
                checksum_kind=str(r["checksum_kind"]),
                checksum=bytes(r["checksum"]),
                name=label,
            )
        )
    return jobs, refused


def plan_jobs(
    settings: Settings,
    edition: str,
    regions: Sequence[str],
    jobs: Sequence[FileJob],
    refused: Sequence[tuple[str, str]] = (),
) -> DownloadPlan:
    """Count what is present, partial and missing, and the time the request budget imposes."""
    plan = DownloadPlan(edition, list(regions), refused=list(refused))
    plan.request_budget = settings.request_budget
    plan.window_seconds = settings.window_seconds
    for j in jobs:
        plan.files += 1
        plan.bytes += j.size
        try:
            if j.dest.stat().st_size == j.size and not part_path(j.dest).exists():
                plan.present_files += 1
                plan.present_bytes += j.size
                continue
        except FileNotFoundError:
            pass
        try:
            plan.partial_bytes += min(part_path(j.dest).stat().st_size, j.size)
        except FileNotFoundError:
            pass
        plan.to_fetch_files += 1
        plan.to_fetch_bytes += j.size
    plan.requests = plan.to_fetch_files
    windows = math.ceil(plan.requests / max(plan.request_budget, 1))
    plan.pacing_seconds = max(0, windows - 1) * plan.window_seconds
    return plan


def check_space(root: Path, needed: int) -> None:
    """Refuse to start when the target filesystem cannot hold what is left to fetch."""
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    free = st.f_bavail * st.f_frsize
    if needed + SPACE_MARGIN > free:
        raise InsufficientSpaceError(
            f"{needed / 1e6:,.1f} MB to download but only {free / 1e6:,.1f} MB free on {probe}"
        )


def refresh_catalog(
    settings: Settings, selection: Selection, progress: ProgressCallback = no_progress
) -> list[str]:
    """Catalogue the regions that have no manifest yet; pass the refresh's warnings on.

    Warnings (a listing entry refused because its path escapes the store, a missing split
    CSV, ...) go to ``progress`` as "message" events of phase "warning", and are returned.
    """
    from ..catalog import refresh as catalog

    report = catalog.ensure_manifest(
        settings, selection.edition, selection.region_names, progress=progress
    )
    warnings = list(report.warnings) if report is not None else []
    for w in warnings:
        progress(ProgressEvent("message", "warning", message=f"warning: catalog {w}"))
    return warnings


def selected_rows(
    settings: Settings,
    selection: Selection,
    progress: ProgressCallback = no_progress,
    *,
    refresh: bool = True,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Tile rows of the selection plus the split CSV and GeoJSON of each region they are in.

    With ``refresh`` (download) a region without a manifest is catalogued first; without it
    (verify) a missing manifest is an error.
    """
    import pyarrow.compute as pc

    from ..catalog import refresh as catalog

    if refresh:
        refresh_catalog(settings, selection, progress)
    cols = ["edition", "region", "kind", "tile_id", "path", "size", "checksum_kind", "checksum",
            "commit", "shard"]  # fmt: skip
    tiles = catalog.select(settings, selection, kinds=("tile",))
    rows = tiles.select(cols).to_pylist()
    regions = sorted({r["region"] for r in rows})
    if regions:
        table = catalog.load_manifest(settings, selection.edition, regions)
        table = table.filter(pc.equal(table["kind"], "aux"))
        wanted = set()
        for reg in regions:
            region = spec.get_region(reg)
            wanted.add((reg, region.split_csv(selection.edition)))
            wanted.add((reg, region.geojson()))
        rows += [r for r in table.select(cols).to_pylist() if (r["region"], r["path"]) in wanted]
    return rows, regions


def download(
    settings: Settings,
    selection: Selection,
    *,
    workers: int | None = None,
    dry_run: bool = False,
    check_space: bool = True,
    progress: ProgressCallback = no_progress,
    wait: bool = False,
    **opts: Any,
) -> DownloadSummary | DownloadPlan:
    """Fetch the selected files into the store (or, with ``dry_run``, say what it would do)."""
    from ..full.plan import FETCH_MODES
    from ..hub.client import HubClient
    from ..store.lock import store_lock

    fetch = str(opts.get("fetch") or settings.fetch)
    if fetch not in FETCH_MODES:  # a bad flag or setting fails before anything is fetched
        raise UsageError(
            f"unknown fetch mode {fetch!r}",
            "use --fetch auto, whole or ranges (or M3LEO_FETCH, or fetch = ... in the config file)",
        )
    nworkers = workers or settings.workers
    if selection.edition == "full":
        from ..full import download as shards

        refresh_catalog(settings, selection, progress)  # download_full then finds it there

        with HubClient(settings) as client:
            result: DownloadSummary | DownloadPlan = shards.download_full(
                settings,
                selection,
                client=client,
                workers=nworkers,
                dry_run=dry_run,
                progress=progress,
                check_space=check_space,
                wait=wait,
                **opts,
            )
        return result

    rows, regions = selected_rows(settings, selection, progress)
    jobs, refused = build_jobs(settings, rows)
    plan = plan_jobs(settings, selection.edition, regions, jobs, refused)
    if dry_run:
        return plan
    if check_space:
        _space(settings.data_dir, plan.to_fetch_bytes - plan.partial_bytes)
    store = Store(settings.data_dir)

    def on_wait(holder: str) -> None:
        progress(ProgressEvent("message", "lock", message=f"waiting for the lock ({holder})"))

    with store_lock(store, wait=wait, on_wait=on_wait), HubClient(settings) as client:
        summary = run_jobs(client, jobs, workers=nworkers, progress=progress)
    finish(summary, store, refused)
    return summary


def finish(summary: DownloadSummary, store: Store, refused: Sequence[tuple[str, str]] = ()) -> None:
    """Add refused paths to the failures and write the failure report if anything failed."""
    if refused:
        summary.failures = list(refused) + summary.failures
        summary.failed += len(refused)
    if summary.failures:
        summary.report_path = write_report(store.state_dir / "reports", summary)


_space = check_space
