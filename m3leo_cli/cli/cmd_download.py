"""`m3leo download` (and the progress bar `verify` shares)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from ..errors import DownloadFailedError
from .app import app
from .options import (
    BBoxOpt,
    DataDir,
    Edition,
    EngineOpt,
    JsonOut,
    Limit,
    Modalities,
    Quiet,
    Regions,
    Revision,
    SchedulerOpt,
    Splits,
    TilesFile,
    TilesOpt,
    Token,
    Wait,
    Workers,
    Years,
    selection_from,
    settings_from,
)
from .render import err_console, human_bytes, not_published, print_json, say

DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Print the plan (files, bytes, requests, pacing) and fetch nothing."
    ),
]
NoSpaceCheck = Annotated[
    bool, typer.Option("--no-space-check", help="Skip the free-space check before starting.")
]
Fetch = Annotated[
    str | None,
    typer.Option(
        "--fetch",
        help="Full edition, per shard: auto (fewest bytes), whole (the verified shard) or "
        "ranges (footer + the needed row groups). Default: the fetch setting (auto).",
        show_default=False,
    ),
]
KeepShards = Annotated[
    bool | None,
    typer.Option(
        "--keep-shards/--no-keep-shards",
        help="Full edition: keep whole shards in <data dir>/.m3leo/shards/ after unpacking "
        "(default: the keep_shards setting, off).",
        show_default=False,
    ),
]


class _Bar:
    """One rich bar on stderr for bytes, with rate, ETA and the file count (terminals only).

    It redraws on the run's own events (at most :attr:`EVERY` seconds apart), not from a
    thread of its own: a process with no other thread can fork its download processes
    (fetch/processes.py) instead of spawning them."""

    EVERY = 0.1  # seconds between two redraws

    def __init__(self, label: str) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.p = Progress(
            TextColumn(label),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]}"),
            console=err_console(),
            transient=True,
            auto_refresh=False,
        )
        self.shown = 0.0  # when the bar was last drawn (monotonic seconds)
        self.done = 0
        self.total: int | None = None
        self.task = self.p.add_task(label, total=None, files="")
        self.p.start()

    def update(self, event: Any) -> None:
        if event.kind == "start":
            self.total = event.total_files
            self.p.update(self.task, total=event.total_bytes, files=self._files())
        elif event.kind == "advance":
            self.done += event.files
            self.p.update(self.task, advance=event.bytes, files=self._files())
        else:
            return
        now = time.monotonic()
        if event.kind == "start" or now - self.shown >= self.EVERY:
            self.shown = now
            self.p.refresh()

    def _files(self) -> str:
        return f"{self.done}/{self.total if self.total is not None else '?'} files"

    def close(self) -> None:
        self.p.stop()


def _progress(quiet: bool, json_out: bool, label: str, bars: bool = True) -> tuple[Any, Any]:
    from ..progress import ProgressEvent

    show = bars and not quiet and not json_out and err_console().is_terminal
    bar = _Bar(label) if show else None

    def progress(event: ProgressEvent) -> None:
        if event.kind == "message" and (not quiet or event.phase == "warning"):
            if bar is not None:
                bar.p.console.print(event.message, markup=False, highlight=False)
            else:
                say(event.message)
        elif bar is not None and event.phase in ("download", "verify", "shards"):
            bar.update(event)

    return progress, bar


def _rate(nbytes: int, seconds: float) -> str:
    return human_bytes(nbytes / seconds) + "/s" if seconds > 0 else "-"


@app.command("download")
def download_cmd(
    edition: Edition = None,
    region: Regions = None,
    modality: Modalities = None,
    split: Splits = None,
    year: Years = None,
    bbox: BBoxOpt = None,
    tiles: TilesOpt = None,
    tiles_file: TilesFile = None,
    limit: Limit = None,
    workers: Workers = None,
    fetch: Fetch = None,
    keep_shards: KeepShards = None,
    dry_run: DryRun = False,
    no_space_check: NoSpaceCheck = False,
    wait: Wait = False,
    revision: Revision = None,
    token: Token = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Download the selected files into the store: resumable, checksummed, polite.

    Finished files are skipped, interrupted ones resume, and one failure never stops the
    others: they are listed in a report file and the exit code is 1. For the full edition each
    shard is fetched whole or as row-group ranges, whichever moves fewer bytes (see --fetch).

    Example: m3leo download --edition miniset --region europe --modality coherence
    """
    from contextlib import nullcontext

    from ..dist.engine import check_engine, open_engine
    from ..fetch.plan import DownloadPlan
    from ..mirror.download import download

    settings = settings_from(
        data_dir=data_dir,
        workers=workers,
        fetch=fetch,
        keep_shards=keep_shards,
        engine=engine,
        scheduler=scheduler,
        revision=revision,
        token=token,
    )
    sel = selection_from(
        edition, region, modality, split, year, bbox, tiles, tiles_file, limit, settings=settings
    )
    check_engine(settings.engine)
    progress, bar = _progress(quiet, json_out, "download", settings.progress_bars)
    try:
        with nullcontext() if dry_run else open_engine(settings, progress=progress) as pool:
            result = download(
                settings,
                sel,
                workers=workers,
                dry_run=dry_run,
                check_space=not no_space_check,
                progress=progress,
                wait=wait,
                pool=pool,
            )
    finally:
        if bar is not None:
            bar.close()
    if isinstance(result, DownloadPlan) or not hasattr(result, "downloaded"):
        plan = result.to_dict()
        if json_out:
            print_json(plan)
        else:
            _show_plan(plan)
        return
    s = result
    if json_out:
        print_json(s.to_dict())
    elif not quiet:
        say(
            f"downloaded {s.downloaded}, skipped {s.skipped} (already there), failed {s.failed}: "
            f"{human_bytes(s.bytes)} in {s.seconds:.1f} s ({_rate(s.bytes, s.seconds)})"
            + (
                f", {s.concurrency} transfer{'s' if s.concurrency != 1 else ''} at once"
                if s.concurrency and s.downloaded
                else ""
            )
        )
        if s.absent:
            say(not_published(s.absent) + ": nothing to fetch")
    if s.failed:
        first = s.failures[0]
        from ..fetch.runner import failure_hint

        raise DownloadFailedError(
            f"{s.failed} file(s) failed (first: {first[0]}: {first[1]}); report: {s.report_path}",
            failure_hint(s),
        )


def _show_plan(plan: dict[str, Any]) -> None:
    say(
        f"{plan.get('files', 0)} files selected ({human_bytes(plan.get('bytes'))}); "
        f"{plan.get('present_files', 0)} already present"
    )
    say(
        f"to fetch: {plan.get('to_fetch_files', 0)} files, "
        f"{human_bytes(plan.get('to_fetch_bytes'))}"
        + (
            f" ({human_bytes(plan['partial_bytes'])} already in .part files)"
            if plan.get("partial_bytes")
            else ""
        )
    )
    if "requests" in plan:
        pace = plan.get("pacing_seconds", 0) or 0
        per_file = plan.get("requests_per_file", plan["requests"])
        say(
            f"requests: {plan['requests']}"
            + (
                f" (links by the hundred; {per_file} file by file)"
                if per_file != plan["requests"]
                else ""
            )  # fmt: skip
            + f" at a budget of {plan.get('request_budget')} per "
            f"{plan.get('window_seconds', 0):.0f} s"
            + (f": at least {pace / 60:.1f} min of pacing" if pace else ": no pacing needed")
        )
    if plan.get("budgets"):
        b = plan["budgets"]
        say(
            f"Hub budgets per {plan.get('window_seconds', 0):.0f} s ({plan.get('hub_plan')} plan): "
            f"resolvers {b['resolvers']}, api {b['api']}, pages {b['pages']}"
        )
    if plan.get("absent"):
        say(not_published(plan["absent"]) + ": nothing to fetch")
    shards = plan.get("shards", [])
    if shards:
        modes = [sh.get("mode") for sh in shards]
        say(
            f"shards: {len(shards)} ({modes.count('whole')} whole, {modes.count('ranges')} "
            f"by ranges, {modes.count('skip')} already unpacked)"
        )
    for sh in shards:
        say(_shard_line(sh))
    for item in plan.get("refused", []):
        say(f"refused {item['path']}: {item['reason']}")


def _shard_line(sh: dict[str, Any]) -> str:
    """One full-edition shard of the plan: whole or ranges, row groups, bytes, requests."""
    name = f"{sh.get('region')}/{sh.get('shard')}"
    tiles = f"{sh.get('tiles', 0)} tiles"
    if sh.get("present"):
        tiles += f" (+{sh['present']} present)"
    if sh.get("mode") == "skip":
        gone = len(sh.get("absent") or [])
        why = f"{sh.get('present', 0)} tiles already unpacked" + (
            f", {gone} not published in it" if gone else ""
        )
        return f"  {name}: skip, {why}"
    if sh.get("mode") == "ranges":
        rgs = sh.get("row_groups") or []
        how = f"ranges, {len(rgs)} row group{'s' if len(rgs) != 1 else ''} {_groups(rgs)}"
    else:
        how = f"whole shard ({human_bytes(sh.get('size'))})"
    return (
        f"  {name}: {how}; {tiles}; {human_bytes(sh.get('bytes'))} in "
        f"{sh.get('requests', 0)} request{'s' if sh.get('requests') != 1 else ''}"
    )


def _groups(rgs: list[int]) -> str:
    """[0, 1, 2, 5] -> "[0-2, 5]"."""
    spans: list[str] = []
    for g in sorted(rgs):
        if (
            spans
            and spans[-1].rsplit("-", 1)[-1].isdigit()
            and int(spans[-1].rsplit("-", 1)[-1]) == g - 1
        ):
            spans[-1] = f"{spans[-1].split('-')[0]}-{g}"
        else:
            spans.append(str(g))
    return "[" + ", ".join(spans) + "]"
