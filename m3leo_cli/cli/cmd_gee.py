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
        typer.Argument(
            help="Built-in recipe: s1grd-YYYY, s1grd-median-YYYY, s2rgbm-YYYY or "
            "esaworldcover-YYYY."
        ),
    ] = None,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", help="A recipe file (TOML) for a layer of yours.")
    ] = None,
    project: Annotated[
        str | None,
        typer.Option("--project", help="Cloud project registered for Earth Engine."),
    ] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(
            "--credentials",
            help="A service-account key (JSON). Default: M3LEO_EE_TOKEN, "
            "GOOGLE_APPLICATION_CREDENTIALS, then `earthengine authenticate`'s.",
        ),
    ] = None,
    chip_px: Annotated[
        int | None,
        typer.Option("--chip-px", help="Chip side in pixels. Default: chip size / 10 m (448)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Concurrent requests.")] = 8,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N chips.")] = None,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Only the chips the last run recorded as failed."),
    ] = False,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Download a layer from Earth Engine for every chip of a local region, one GeoTIFF each.

    Uses Earth Engine's standard REST endpoint (M3LEO_EE_ENDPOINT; M3LEO_EE_HIGH_VOLUME=1 for
    the high-volume one), your project (--project, M3LEO_EE_PROJECT, `earthengine
    set_project`, GOOGLE_CLOUD_PROJECT) and your credentials (--credentials KEY.json,
    M3LEO_EE_TOKEN, GOOGLE_APPLICATION_CREDENTIALS or `earthengine authenticate`, with the
    `gee` extra). Quota answers are retried, requests over the size limit are split by band
    groups, finished chips are skipped, so re-running resumes. A chip that fails is recorded
    and the others go on; the run then exits 1 and --retry-failed re-runs those chips.

    Example: m3leo gee lux s1grd-2020 --project my-ee-project
    """
    from ..aoi.gee import gee_download, run_error
    from ..aoi.recipes import builtin_recipe, load_recipe
    from ..errors import UsageError

    if (layer is None) == (recipe is None):
        raise UsageError(
            "give a built-in layer or --recipe FILE (one of them)",
            "e.g. `m3leo gee REGION s1grd-2020` or `m3leo gee REGION --recipe ndvi.toml`",
        )
    settings = settings_from(data_dir=data_dir, ee_credentials=credentials)
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
            retry_failed=retry_failed,
            progress=cb,
        )
    again = f"m3leo gee {region} " + (f"--recipe {recipe}" if recipe is not None else str(layer))
    if json_out:
        print_json(info)
    elif not quiet:
        say(
            f"{info['datakind']}: {info['downloaded']} chips downloaded, {info['skipped']} "
            f"already there, {len(info['failed'])} failed"
            + (f", {info['not_tried']} not tried (stopped)" if info["not_tried"] else "")
            + f", {info['requests']} requests ({info['retries']} retries, "
            f"{info['split_chips']} chips split by band groups)"
        )
        for f in info["failed"][:10]:
            say(f"  failed {f['tile_id']}: {f['reason']}")
        if len(info["failed"]) > 10:
            say(f"  ... and {len(info['failed']) - 10} more (see {info['report']})")
        say(f"  {info['folder']}")
    error = run_error(info, again)
    if error is not None:
        raise error
