"""``m3leo download``: from a selection to verified files in the store, for either edition.

This module only chooses: the miniset path (:mod:`m3leo_cli.fetch.miniset`) or the full
edition's shard path (:mod:`m3leo_cli.full.download`). Both build the same plan type and run
the same runner; neither calls the other.
"""

from __future__ import annotations

from typing import Any

from .. import spec
from ..config import Settings
from ..errors import UsageError
from ..fetch.concurrency import MOST
from ..fetch.plan import DownloadPlan, refresh_catalog
from ..fetch.runner import DownloadSummary
from ..progress import ProgressCallback, no_progress
from ..selection import Selection

__all__ = ["download"]


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
    from ..fetch.miniset import download_miniset
    from ..full.plan import FETCH_MODES

    fetch = str(opts.get("fetch") or settings.fetch)
    if fetch not in FETCH_MODES:  # a bad flag or setting fails before anything is fetched
        raise UsageError(
            f"unknown fetch mode {fetch!r}",
            "use --fetch auto, whole or ranges (or M3LEO_FETCH, or fetch = ... in the config file)",
        )
    nworkers = workers or settings.workers
    # no --workers, M3LEO_WORKERS or config: the miniset's transfers at once adapt (to MOST)
    adaptive = workers is None and settings.source_of("workers") == "default"
    spec.get_edition(selection.edition).repo_id("")  # the local edition: refused with a hint
    if opts.get("pool") is not None and selection.edition != "full":
        raise UsageError(
            "--engine dask applies to the full edition (Parquet shards) only",
            "drop --engine for the miniset, whose files come straight from the Hub",
        )
    if selection.edition != "full":
        return download_miniset(
            settings,
            selection,
            workers=nworkers,
            most=MOST if adaptive else None,
            dry_run=dry_run,
            space_check=check_space,
            progress=progress,
            wait=wait,
        )

    from ..full.download import download_full
    from ..hub.client import HubClient

    refresh_catalog(settings, selection, progress)  # download_full then finds it there
    with HubClient(settings) as client:
        return download_full(
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
