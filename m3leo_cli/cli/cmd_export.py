"""`m3leo export`: co-aligned multi-modal samples in the formats training frameworks read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import CorruptTileError
from ..export import EXPORTERS
from ..export.base import Failure
from .app import app
from .options import (
    BBoxOpt,
    DataDir,
    Edition,
    EngineOpt,
    JsonOut,
    Limit,
    Quiet,
    Regions,
    Revision,
    SchedulerOpt,
    Splits,
    TilesFile,
    TilesOpt,
    Years,
    selection_from,
    settings_from,
)
from .render import err_console, human_bytes, not_published, print_json, say

FORMATS = ", ".join(EXPORTERS)

Format = Annotated[str, typer.Option("--format", "-f", help=f"Output format: {FORMATS}.")]
Out = Annotated[
    str,
    typer.Option(
        "--out",
        "-o",
        help="Output folder (empty, or this export), or an object-store URL such as "
        "s3://bucket/prefix (needs fsspec's package for it, e.g. s3fs).",
    ),
]
Inputs = Annotated[
    list[str] | None,
    typer.Option(
        "--modality", "-m", help="Input layer (repeatable): datakind, family or alias, e.g. s1grd."
    ),
]
Labels = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", help="Target layer (repeatable), e.g. esaworldcover."),
]


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    format: Format,
    out: Out,
    modality: Inputs = None,
    label: Labels = None,
    edition: Edition = None,
    region: Regions = None,
    split: Splits = None,
    year: Years = None,
    bbox: BBoxOpt = None,
    tiles: TilesOpt = None,
    tiles_file: TilesFile = None,
    limit: Limit = None,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing", help="Keep tiles lacking a layer (absent layers recorded)."
        ),
    ] = False,
    shard_size: Annotated[
        int, typer.Option("--shard-size", help="Samples per tar, Parquet or Zarr shard.")
    ] = 256,
    resample: Annotated[
        int | None,
        typer.Option("--resample", help="Put every layer on an N x N grid (nearest for labels)."),
    ] = None,
    normalize: Annotated[
        bool,
        typer.Option(
            "--normalize",
            help="Inputs as (value - mean) / std, float32, with `m3leo stats --bands` stats "
            "(labels and class codes are never normalised).",
        ),
    ] = False,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            help="Inputs decoded (S1 in dB, S2 as stored/255: `m3leo info` shows each rule) as "
            "this type, e.g. float32; refused when it cannot hold them. Labels keep their "
            "stored type. Default: as stored.",
        ),
    ] = None,
    num_shards: Annotated[
        int, typer.Option("--num-shards", help="Split the export into K disjoint jobs.")
    ] = 1,
    shard_index: Annotated[
        int, typer.Option("--shard-index", help="Which job this is, 0..K-1 (Slurm array id).")
    ] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a different earlier export in --out.")
    ] = False,
    stats_file: Annotated[
        Path | None,
        typer.Option(
            "--stats",
            help="With --normalize: statistics from this file (`m3leo stats --bands --stats "
            "FILE`); default: the store, then the user cache.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", "--max-workers", "-w", help="Decoding threads (default: settings)."
        ),
    ] = None,
    link: Annotated[
        bool,
        typer.Option(
            "--link",
            help="geotiff: hard-link the store's files instead of copying them (no extra space; "
            "editing an exported file then edits the store).",
        ),
    ] = False,
    revision: Revision = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Export local tiles as samples (every requested layer joined on tile id), split by split.

    Re-running the same command completes an interrupted export; --num-shards/--shard-index
    cut it into disjoint jobs that write into the same --out.

    Example: m3leo export --format webdataset --out ds --edition miniset --region europe
    --modality s1grd --modality gssic --label esaworldcover
    """
    from ..dist.engine import open_engine
    from ..export import ExportOptions, export
    from ..export.target import is_url
    from ..progress import ProgressEvent

    settings = settings_from(
        data_dir=data_dir, workers=workers, engine=engine, scheduler=scheduler, revision=revision
    )
    sel = selection_from(
        edition, region, None, split, year, bbox, tiles, tiles_file, limit, settings=settings
    )
    options = ExportOptions(
        format=format,
        out=out if is_url(out) else Path(out),
        inputs=tuple(modality or ()),
        labels=tuple(label or ()),
        allow_missing=allow_missing,
        shard_size=shard_size,
        resample=resample,
        normalize=normalize,
        dtype=dtype,
        num_shards=num_shards,
        shard_index=shard_index,
        overwrite=overwrite,
        workers=workers,
        command=_command_line(ctx),
        stats_file=stats_file,
        link=link,
    )
    show = settings.progress_bars and not quiet and not json_out and err_console().is_terminal
    bar = _Bar() if show else None

    def progress(event: ProgressEvent) -> None:
        if event.kind == "message" and not quiet:
            say(event.message)
        elif bar is not None:
            bar.update(event)

    try:
        with open_engine(settings, progress=progress) as pool:
            summary = export(settings, sel, options, progress, pool=pool)
    finally:
        if bar is not None:
            bar.close()
    if json_out:
        print_json(summary.as_dict())
    elif not quiet:
        _report(summary)
    if summary.failures:
        first = summary.failures[0]
        raise CorruptTileError(
            f"{len(summary.failures)} tile(s) could not be read and were left out "
            f"(first: {first.path}: {first.reason})",
            f"run `{_repair_command(sel.edition, summary.failures)}`, "
            "then re-run the same export to add them",
        )


def _repair_command(edition: str, failures: list[Failure]) -> str:
    """verify --repair for exactly the unreadable files (a bare one checks the default edition)."""
    regions = sorted({f.region for f in failures})
    datakinds = sorted({Path(f.path).parent.name for f in failures})
    tiles = sorted({f.tile_id for f in failures})
    words = ["m3leo verify --repair", f"--edition {edition}"]
    words += [f"--region {r}" for r in regions] + [f"--modality {d}" for d in datakinds]
    if len(tiles) <= 50:
        words.append("--tiles " + ",".join(tiles))
    return " ".join(words)


def _command_line(ctx: typer.Context) -> tuple[str, ...]:
    """The command as given (options in declaration order, defaults left out), for
    metadata.json: rebuilt from the parsed options, so it is right in-process too."""
    words = ["m3leo", "export"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value == param.default or not param.opts:
            continue
        flag = max(param.opts, key=len)
        if isinstance(value, bool):
            words.append(flag)
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            words += [flag, str(v)]
    return tuple(words)


def _report(summary: object) -> None:
    from ..export import ExportSummary

    assert isinstance(summary, ExportSummary)
    s = summary
    part = f" (job {s.part[0]} of {s.part[1]})" if s.part[1] > 1 else ""
    say(
        f"exported {s.written} samples into {s.units_written} {s.format} outputs{part}: "
        f"{s.files} files, {human_bytes(s.bytes)} in {s.seconds:.1f} s"
    )
    if s.units_skipped:
        say(f"{s.units_skipped} outputs were already finished and kept")
    for layer, n in s.skipped_missing.items():
        keep = n - s.bare  # --allow-missing keeps tiles with another layer, never bare ones
        more = f" (pass --allow-missing to keep the {keep} with other layers)" if keep else ""
        say(f"skipped {n} tiles lacking {layer}{'' if s.allow_missing else more}")
    for layer, n in s.not_published.items():
        say(not_published(n, layer) + ": nothing to download")
    for layer, n in s.not_downloaded.items():
        say(f"{n} {layer} tiles are not downloaded (`m3leo download` fetches them)")
    for f in s.failures:
        say(f"failed {f.split}/{f.tile_id}: {f.path}: {f.reason}")
    if s.complete and s.metadata_path:
        say(f"metadata: {s.metadata_path}")
    elif not s.complete:
        say("other jobs of this export are not finished; the last one writes metadata.json")


class _Bar:
    """A rich bar on stderr (terminals only) over the source bytes read, with rate, elapsed
    time and ETA, and the samples done of all with their rate; it advances per sample, so it
    moves from the first second."""

    def __init__(self) -> None:
        import time

        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.p = Progress(
            TextColumn("export"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[samples]}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console(),
            transient=True,
            speed_estimate_period=10.0,
        )
        self.done = 0
        self.total: int | None = None
        self.t0 = time.monotonic()
        self.task = self.p.add_task("export", total=None, samples=self._samples())
        self.p.start()

    def _samples(self) -> str:
        import time

        rate = self.done / max(time.monotonic() - self.t0, 1e-9)
        total = self.total if self.total is not None else "?"
        return f"{self.done}/{total} samples ({rate:.1f}/s)"

    def update(self, event: object) -> None:
        from ..progress import ProgressEvent

        assert isinstance(event, ProgressEvent)
        if event.kind == "start":
            self.total = event.total_files
            self.p.update(self.task, total=event.total_bytes or None, samples=self._samples())
        elif event.kind == "advance":
            self.done += event.files
            self.p.update(self.task, advance=event.bytes, samples=self._samples())

    def close(self) -> None:
        self.p.stop()
