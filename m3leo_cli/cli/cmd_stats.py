"""`m3leo stats`: tiles and bytes by region x modality x split, from the manifest."""

from __future__ import annotations

from pathlib import Path
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
from .render import human_bytes, not_published, out_console, print_json, say


@app.command("stats")
def stats_cmd(
    edition: Edition = None,
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
        False,
        "--bands",
        help="Per-band statistics of the selected local tiles, of the train split unless "
        "--split is given (saved for m3leo export --normalize and m3leo train).",
    ),
    percentiles: str = typer.Option("2,50,98", "--percentiles", help="With --bands: which ones."),
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
    stats_file: Path | None = typer.Option(
        None,
        "--stats",
        help="With --bands: save them in this JSON file (default: the store, or the user "
        "cache when the store is read-only).",
    ),
) -> None:
    """Tiles, files and bytes per region, modality and split, and how many are local.

    Works offline from the cached manifest (run `m3leo catalog refresh` once).

    Example: m3leo stats --edition miniset --region europe --modality gssic --json
    """
    from ..errors import UsageError
    from ..mirror.listing import stats_report

    settings = settings_from(data_dir=data_dir, engine=engine, scheduler=scheduler)
    sel = selection_from(
        edition, region, modality, split, year, bbox, tiles, tiles_file, limit, settings=settings
    )
    if (engine or scheduler) and not bands:
        raise UsageError(
            "--engine and --scheduler apply to band statistics only",
            "add --bands (manifest-level stats are a quick local read)",
        )
    if bands:
        from .bands_view import run_band_stats

        # normalisation statistics come from the train split alone (tiles named one by one
        # are taken as named)
        defaulted = not sel.splits and not sel.tiles
        if defaulted:
            from dataclasses import replace

            sel = replace(sel, splits=("train",))
        run_band_stats(settings, sel, percentiles, json_out, stats_file)
        if defaulted:
            say("statistics of the train split (for normalisation); --split val or test for others")
        return None
    if stats_file is not None:
        raise UsageError("--stats FILE goes with --bands", "add --bands, or leave --stats out")
    report = stats_report(settings, sel)
    if json_out:
        print_json(report)
        return
    render_stats(report["rows"], report["total"])
    if not any(r["local_tiles"] for r in report["rows"]):  # `local 0` everywhere: say why
        from ..catalog.editions import other_edition_hint

        extra = other_edition_hint(settings, sel.edition, sel.regions)
        if extra:
            say(f"hint: nothing of the {sel.edition} edition is local; {extra}")
    if report["total"].get("not_published"):  # known from the shards read (issue 27)
        say(not_published(report["total"]["not_published"]) + ": not counted as tiles")
    if sel.edition == "full":  # the same words download, verify, export and tiles use
        say(
            "full edition: tiles are those _parquet.csv lists; a shard may not hold some of "
            "them (not published in this datakind's shards): `m3leo tiles --json` names them "
            "once a download has read the shard"
        )


def render_stats(rows: list[dict[str, Any]], total: dict[str, Any]) -> None:
    """The people's table, narrow enough for 80 columns, with a total line whose tiles are
    distinct tiles (a tile in three modalities counts once)."""
    from rich import box
    from rich.table import Table

    cells = [
        [r["region"], r["modality"], r["split"] or "-", f"{r['tiles']:,}", f"{r['files']:,}",
         human_bytes(r["bytes"]), f"{r['local_tiles']:,}"]
        for r in rows
    ]  # fmt: skip
    cells.append(
        ["total", "", "", f"{total['tiles']:,}", f"{total['files']:,}",
         human_bytes(total["bytes"]), ""]
    )  # fmt: skip
    heads = ["region", "modality", "split", "tiles", "files", "bytes", "local"]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for i, h in enumerate(heads):
        width = max(len(h), *(len(c[i]) for c in cells))
        table.add_column(
            h, justify="right" if i >= 3 else "left", no_wrap=i != 1, min_width=width,
            overflow="fold",
        )  # fmt: skip
    for c in cells[:-1]:
        table.add_row(*c)
    table.add_row(*cells[-1], style="bold")
    out_console().print(table)
    say("total counts each tile once; local = tiles of that row already in the store")
