"""`m3leo gee`: per-chip Earth Engine downloads into a local region."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .cmd_ingest import chip_bar
from .options import DataDir, JsonOut, Quiet, settings_from
from .render import print_json, say


@app.command("gee")
def gee(
    region: Annotated[str, typer.Argument(help="Local region (made by `m3leo grid`).")],
    layer: Annotated[
        str | None,
        typer.Argument(help="Built-in recipe: s1grd-YYYY, s2rgbm-YYYY or esaworldcover-YYYY."),
    ] = None,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", help="A recipe file (TOML) for a layer of yours.")
    ] = None,
    project: Annotated[
        str | None,
        typer.Option("--project", help="Cloud project registered for Earth Engine."),
    ] = None,
    chip_px: Annotated[
        int | None,
        typer.Option("--chip-px", help="Chip side in pixels. Default: chip size / 10 m (448)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Concurrent requests.")] = 8,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N chips.")] = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Download a layer from Earth Engine for every chip of a local region, one GeoTIFF each.

    Uses the high-volume REST endpoint (M3LEO_EE_ENDPOINT), your project (--project or
    M3LEO_EE_PROJECT) and your credentials (`earthengine authenticate` with the `gee` extra,
    or M3LEO_EE_TOKEN). Quota answers are retried, requests over the size limit are split by
    band groups, and finished chips are skipped, so re-running resumes.

    Example: m3leo gee lux s1grd-2020 --project my-ee-project
    """
    from ..aoi.eeexpr import builtin_recipe, load_recipe
    from ..aoi.gee import gee_download
    from ..errors import UsageError

    if (layer is None) == (recipe is None):
        raise UsageError(
            "give a built-in layer or --recipe FILE (one of them)",
            "e.g. `m3leo gee REGION s1grd-2020` or `m3leo gee REGION --recipe ndvi.toml`",
        )
    settings = settings_from(data_dir=data_dir)
    rec = load_recipe(recipe) if recipe is not None else builtin_recipe(str(layer))
    with chip_bar(quiet or json_out) as cb:
        info = gee_download(
            settings,
            region,
            rec,
            project=project,
            chip_px=chip_px,
            workers=workers,
            limit=limit,
            progress=cb,
        )
    if json_out:
        print_json(info)
        return
    if not quiet:
        say(
            f"{info['datakind']}: {info['downloaded']} chips downloaded, {info['skipped']} "
            f"already there, {info['requests']} requests ({info['retries']} retries, "
            f"{info['split_chips']} chips split by band groups)"
        )
        say(f"  {info['folder']}")
