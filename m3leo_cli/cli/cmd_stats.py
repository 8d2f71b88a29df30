"""`m3leo stats`: tiles and bytes by region x modality x split, from the manifest."""

from __future__ import annotations

from typing import Any

import typer

from .app import app
from .options import (
    BBoxOpt,
    DataDir,
    Edition,
    EngineOpt,
    JsonOut,
    Limit,
    Modalities,
    Regions,
    SchedulerOpt,
    Splits,
    TilesFile,
    TilesOpt,
    Years,
    selection_from,
    settings_from,
)
from .render import human_bytes, out_console, print_json


@app.command("stats")
def stats_cmd(
    edition: Edition = "full",
    region: Regions = None,
    modality: Modalities = None,
    split: Splits = None,
    year: Years = None,
    bbox: BBoxOpt = None,
    tiles: TilesOpt = None,
    tiles_file: TilesFile = None,
    limit: Limit = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    bands: bool = typer.Option(
        False, "--bands", help="Per-band statistics of the selected local tiles (saved for export)."
    ),
    percentiles: str = typer.Option("2,50,98", "--percentiles", help="With --bands: which ones."),
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Tiles, files and bytes per region, modality and split, and how many are local.

    Works offline from the cached manifest (run `m3leo catalog refresh` once).

    Example: m3leo stats --edition miniset --region europe --modality gssic --json
    """
    from ..catalog.stats import stats

    settings = settings_from(data_dir=data_dir, engine=engine, scheduler=scheduler)
    sel = selection_from(edition, region, modality, split, year, bbox, tiles, tiles_file, limit)
    if (engine or scheduler) and not bands:
        from ..errors import UsageError

        raise UsageError(
            "--engine and --scheduler apply to band statistics only",
            "add --bands (manifest-level stats are a quick local read)",
        )
    if bands:
        from .bands_view import run_band_stats

        return run_band_stats(settings, sel, percentiles, json_out)
    rows = stats(settings, sel, files=not json_out)
    if json_out:
        print_json({"rows": rows})
        return
    render_stats(rows)


def render_stats(rows: list[dict[str, Any]]) -> None:
    """The people's table, with a total line."""
    from rich import box
    from rich.table import Table

    table = Table(
        "region",
        "modality",
        "split",
        "tiles",
        "files",
        "bytes",
        "local tiles",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for r in rows:
        table.add_row(
            r["region"],
            r["modality"],
            r["split"] or "-",
            f"{r['tiles']:,}",
            f"{r['files']:,}",
            human_bytes(r["bytes"]),
            f"{r['local_tiles']:,}",
        )
    table.add_row(
        "total",
        "",
        "",
        f"{sum(r['tiles'] for r in rows):,}",
        f"{sum(r['files'] for r in rows):,}",
        human_bytes(sum(r["bytes"] for r in rows)),
        f"{sum(r['local_tiles'] for r in rows):,}",
        style="bold",
    )
    out_console().print(table)
