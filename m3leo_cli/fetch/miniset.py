"""The miniset edition's download: one manifest row is one file, fetched by the shared runner."""

from __future__ import annotations

from ..config import Settings
from ..progress import ProgressCallback, ProgressEvent, no_progress
from ..selection import Selection
from ..store.journal import RunJournal
from ..store.layout import Store
from .plan import DownloadPlan, build_jobs, check_space, finish, plan_jobs, selected_rows
from .processes import plan_processes, run_jobs_processes
from .runner import DownloadSummary, run_jobs
from .transfer import FileJob


def download_miniset(
    settings: Settings,
    selection: Selection,
    *,
    workers: int,
    most: int | None = None,
    dry_run: bool = False,
    space_check: bool = True,
    progress: ProgressCallback = no_progress,
    wait: bool = False,
) -> DownloadSummary | DownloadPlan:
    """Fetch the selected miniset files (or, with ``dry_run``, say what that would do).

    ``most`` above ``workers``: transfers at once adapt up to it (:mod:`~.concurrency`)."""
    from ..hub.client import HubClient
    from ..store.lock import store_lock

    rows, regions = selected_rows(settings, selection, progress)
    if dry_run:
        jobs, refused = build_jobs(settings, rows)
        return plan_jobs(settings, selection.edition, regions, jobs, refused)
    store = Store(settings.data_dir)

    def on_wait(holder: str) -> None:
        progress(ProgressEvent("message", "lock", message=f"waiting for the lock ({holder})"))

    with store_lock(store, wait=wait, on_wait=on_wait), RunJournal(store) as journal:
        # the journal has turned unfinished runs' markers into suspects: re-hashed, not trusted
        jobs, refused = build_jobs(settings, rows, journal.is_suspect, durable=False)
        plan = plan_jobs(settings, selection.edition, regions, jobs, refused)
        if space_check:
            check_space(settings.data_dir, plan.to_fetch_bytes - plan.partial_bytes)

        def on_file(job: FileJob, outcome: str) -> None:
            if job.suspect:
                journal.cleared(job.dest)
            if outcome == "downloaded":
                journal.committed()

        processes = plan_processes(settings, plan.to_fetch_files, workers)
        if processes > 1:
            summary = run_jobs_processes(
                settings, jobs, processes=processes, workers=workers, progress=progress,
                on_file=on_file, most=most,
            )  # fmt: skip
        else:
            with HubClient(settings) as client:
                summary = run_jobs(
                    client, jobs, workers=workers, progress=progress, on_file=on_file, most=most
                )
    finish(summary, store, refused)
    return summary
