"""The download plan both editions share: what a run would fetch, as jobs for the runner.

The plan comes from the manifest alone (no HEAD per file: it already knows every size and
checksum). :mod:`.miniset` maps one manifest row to one file; :mod:`m3leo_cli.full.download`
adds per-shard decisions to the same :class:`DownloadPlan` and runs the same
:func:`~m3leo_cli.fetch.runner.run_jobs`.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import spec
from ..config import Settings
from ..errors import InsufficientSpaceError, UnsafePathError
from ..hub.client import resolve_url
from ..hub.lfsbatch import BATCH
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
    requests: int = 0  # resolver requests the run needs (links by the hundred, or per file)
    requests_per_file: int = 0  # the same if the Hub does not answer LFS batches
    request_budget: int = 0
    window_seconds: float = 0.0
    pacing_seconds: float = 0.0  # minimum time the request budget imposes
    hub_plan: str = "anonymous"  # whose quotas: anonymous | free | pro
    budgets: dict[str, int] = field(default_factory=dict)  # per window: resolvers, api, pages
    refused: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["refused"] = [{"path": p, "reason": r} for p, r in self.refused]
        return d


def build_jobs(
    settings: Settings,
    rows: Iterable[dict[str, Any]],
    suspect: Callable[[Path], bool] | None = None,
    *,
    durable: bool = True,
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
                durable=durable,
                suspect=suspect is not None and suspect(dest),
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
    plan.hub_plan, plan.budgets = settings.hub_plan, settings.budgets
    lfs = lfs_fetch = 0  # LFS files selected, and of those to fetch
    for j in jobs:
        plan.files += 1
        plan.bytes += j.size
        lfs += j.checksum_kind == "sha256"
        try:  # a file of the right size, itself (a link or a folder there is not "present")
            st = j.dest.lstat()
            if (
                stat.S_ISREG(st.st_mode)
                and st.st_size == j.size
                and not os.path.lexists(part_path(j.dest))
            ):
                plan.present_files += 1
                plan.present_bytes += j.size
                continue
        except (FileNotFoundError, NotADirectoryError):
            pass
        try:
            plan.partial_bytes += min(part_path(j.dest).lstat().st_size, j.size)
        except (FileNotFoundError, NotADirectoryError):
            pass
        plan.to_fetch_files += 1
        plan.to_fetch_bytes += j.size
        lfs_fetch += j.checksum_kind == "sha256"
    plan.requests_per_file = plan.to_fetch_files
    plan.requests = plan.to_fetch_files
    if settings.lfs_batch:  # LFS files' links come by the hundred (fetch.ahead): a batch per
        # hundred selected files with one missing at least, one more where a region ends
        batches = min(lfs_fetch, math.ceil(lfs / BATCH) + len(regions))
        plan.requests += batches - lfs_fetch
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
    from ..catalog.refresh import ensure_manifest

    report = ensure_manifest(settings, selection.edition, selection.region_names, progress=progress)
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
    if refresh:  # first: its requests leave before pyarrow is imported (it loads meanwhile)
        refresh_catalog(settings, selection, progress)
    import pyarrow.compute as pc

    from ..catalog.info import load_manifest
    from ..catalog.query import select

    cols = ["edition", "region", "kind", "tile_id", "path", "size", "checksum_kind", "checksum",
            "commit", "shard"]  # fmt: skip
    tiles = select(settings, selection, kinds=("tile",))
    rows = tiles.select(cols).to_pylist()
    regions = sorted({r["region"] for r in rows})
    if regions:
        table = load_manifest(settings, selection.edition, regions)
        table = table.filter(pc.equal(table["kind"], "aux"))
        wanted = set()
        for reg in regions:
            region = spec.get_region(reg, selection.edition)
            wanted.add((reg, region.split_csv(selection.edition)))
            wanted.add((reg, region.geojson(selection.edition)))
        rows += [r for r in table.select(cols).to_pylist() if (r["region"], r["path"]) in wanted]
    return rows, regions


def finish(summary: DownloadSummary, store: Store, refused: Sequence[tuple[str, str]] = ()) -> None:
    """Add refused paths to the failures and write the failure report if anything failed."""
    if refused:
        summary.failures = list(refused) + summary.failures
        summary.failed += len(refused)
    if summary.failures:
        summary.report_path = write_report(store.state_dir / "reports", summary)
