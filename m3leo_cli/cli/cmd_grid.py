"""`m3leo grid`: an area of interest to the M3LEO chip grid and its striped split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .options import DataDir, JsonOut, settings_from
from .render import print_json, say


@app.command("grid")
def grid(
    name: Annotated[
        str, typer.Argument(help="Region name (lower-case letters, digits, '-'), e.g. lux.")
    ],
    aoi: Annotated[
        str | None,
        typer.Option("--aoi", help="AOI in lon/lat degrees: a .wkt or .geojson file, or WKT."),
    ] = None,
    bbox: Annotated[str | None, typer.Option("--bbox", help="Or a box: W,S,E,N degrees.")] = None,
    chip_size: Annotated[
        float, typer.Option("--chip-size", help="Chip side in metres (M3LEO: 4480).")
    ] = 4480.0,
    bands: Annotated[int, typer.Option("--bands", help="Number of split stripes.")] = 60,
    angle: Annotated[
        float, typer.Option("--angle", help="Stripe angle in radians, whole tenths (-1.5..1.5).")
    ] = 0.9,
    split: Annotated[
        str, typer.Option("--split", help="train-val-test percentages of stripes.")
    ] = "60-20-20",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write here instead of the store's local edition."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a local region of that name.")
    ] = False,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
) -> None:
    """Cut an AOI into M3LEO chips (geetiles' grid: same ids, same file hash) and split them.

    Writes <name>_partitions_aschips_<hash>.geojson and the split CSV
    (<partition>_splits_60bands_angle09_60-20-20.csv) into <data dir>/local/<name>/, the
    local edition that stats, show, map, verify and export read with
    --edition local --region <name>. Needs the `aoi` extra (shapely).

    Example: m3leo grid lux --aoi luxembourg.wkt
    """
    from ..aoi.create import create_region

    settings = settings_from(data_dir=data_dir)
    info = create_region(
        name,
        data_dir=settings.data_dir,
        aoi=aoi,
        bbox=bbox,
        chip_m=chip_size,
        bands=bands,
        angle=angle,
        split=split,
        out=out,
        overwrite=overwrite,
    )
    if json_out:
        if info["note"]:
            say(f"note: {info['note']}")
        print_json(info)
        return
    s = info["splits"]
    lon, lat = info["centre"]
    say(
        f"AOI centre {abs(lon):.2f} {'E' if lon >= 0 else 'W'}, "
        f"{abs(lat):.2f} {'N' if lat >= 0 else 'S'} (lon/lat)"
    )
    if info["note"]:
        say(f"note: {info['note']}")
    say(
        f"{info['chips']} chips of {info['chip_m']:g} m in UTM EPSG:{info['utm_epsg']}: "
        f"{s['train']} train, {s['val']} val, {s['test']} test"
    )
    say(f"  {info['geojson']}")
    say(f"  {info['split_csv']}")
    if info["edition"]:
        say(f"Next: m3leo ingest {name} ... or m3leo gee {name} ... (see docs/aoi.md)")
