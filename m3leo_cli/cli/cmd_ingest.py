"""`m3leo ingest`: your own rasters cut onto a local region's chips as a new datakind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app
from .options import DataDir, JsonOut, Quiet, settings_from
from .render import err_console, print_json, say


@contextmanager
def chip_bar(hidden: bool) -> Iterator[Callable[[Any], None]]:
    """A chips-done bar on stderr for terminals (nothing when piped, quiet or --json)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    if hidden or not err_console().is_terminal:
        yield lambda event: None
        return
    bar = Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(event: Any) -> None:
        if event.kind == "start":
            tasks[event.phase] = bar.add_task(event.phase, total=event.total_files)
        elif event.kind == "advance" and event.phase in tasks:
            bar.advance(tasks[event.phase], event.files)

    with bar:
        yield update


@app.command("ingest")
def ingest(
    region: Annotated[str, typer.Argument(help="Local region (made by `m3leo grid`).")],
    rasters: Annotated[list[Path], typer.Argument(help="GeoTIFF/COG files (pieces of one layer).")],
    datakind: Annotated[
        str, typer.Option("--datakind", "-d", help="Name of the new datakind, e.g. ndvi-2021.")
    ],
    band: Annotated[
        list[str] | None,
        typer.Option("--band", help="Band name (once per band). Default: the band descriptions."),
    ] = None,
    resampling: Annotated[
        str,
        typer.Option(
            "--resampling",
            help="nearest, bilinear, cubic, cubic_spline, lanczos, average or mode. "
            "Use nearest or mode for class labels.",
        ),
    ] = "nearest",
    chip_px: Annotated[
        int | None,
        typer.Option("--chip-px", help="Chip side in pixels. Default: chip size / 10 m (448)."),
    ] = None,
    nodata: Annotated[
        float | None,
        typer.Option("--nodata", help="Nodata value when the rasters declare none."),
    ] = None,
    label: Annotated[
        bool, typer.Option("--label", help="A label layer (class values, not measurements).")
    ] = False,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Cut rasters onto a local region's chips: one GeoTIFF per chip, checked, in the manifest.

    Each chip is warped from a window of each raster onto its lon/lat pixel grid (EPSG:4326),
    so memory stays flat; nodata is kept and chips without data are not written. Then stats,
    show, map, verify and export read it with --edition local --region REGION.

    Example: m3leo ingest lux mosaic-*.tif --datakind ndvi-2021 --resampling bilinear
    """
    from ..aoi.ingest import ingest as run_ingest

    settings = settings_from(data_dir=data_dir)
    with chip_bar(quiet or json_out) as cb:
        info = run_ingest(
            settings.data_dir,
            region,
            datakind,
            rasters,
            bands=band or (),
            resampling=resampling,
            chip_px=chip_px,
            nodata=nodata,
            label=label,
            progress=cb,
        )
    if json_out:
        print_json(info)
        return
    if not quiet:
        say(
            f"{info['datakind']}: {info['chips_written']} chips written "
            f"({info['chips_without_data']} without data skipped) of {info['chips_in_region']}, "
            f"{len(info['bands'])} {info['dtype']} bands, {info['chip_px']} px, "
            f"{info['resampling']} resampling"
        )
        say(f"  {info['folder']}")
        say(f"Next: m3leo stats --edition local --region {region}")
