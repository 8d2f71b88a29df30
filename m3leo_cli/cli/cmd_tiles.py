"""`m3leo tiles`: list tile ids with split, bbox and which datakinds are published / local."""

from __future__ import annotations

import typer

from .app import app
from .options import (
    BBoxOpt,
    DataDir,
    Edition,
    JsonOut,
    Limit,
    Modalities,
    Regions,
    Splits,
    TilesFile,
    TilesOpt,
    Years,
    selection_from,
    settings_from,
)
from .render import not_published, out_console, print_json, say


@app.command("tiles")
def tiles_cmd(
    edition: Edition = None,
    region: Regions = None,
    modality: Modalities = None,
    split: Splits = None,
    year: Years = None,
    bbox: BBoxOpt = None,
    tiles: TilesOpt = None,
    tiles_file: TilesFile = None,
    limit: Limit = None,
    ids: bool = typer.Option(
        False, "--ids", help="Print only the tile ids, one a line (a file for --tiles-file)."
    ),
    data_dir: DataDir = None,
    json_out: JsonOut = False,
) -> None:
    """Tile ids of the selection with their split, bbox and datakinds (published / local).

    Works offline from the cached manifest (run `m3leo catalog refresh` once).

    Example: m3leo tiles --edition miniset --region europe --split val --ids > val.txt
    """
    from ..mirror.listing import list_tiles

    settings = settings_from(data_dir=data_dir)
    sel = selection_from(
        edition, region, modality, split, year, bbox, tiles, tiles_file, limit, settings=settings
    )
    rows = list_tiles(settings, sel)
    if json_out:
        print_json({"tiles": [t.as_dict() for t in rows]})
        return
    if ids:
        typer.echo("\n".join(t.tile_id for t in rows))
        return
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for name in ("tile", "region", "split", "bbox (W,S,E,N)", "datakinds"):
        table.add_column(name, no_wrap=name != "datakinds")
    for t in rows:
        bbox = ",".join(f"{v:.3f}" for v in t.bbox) if t.bbox else "-"
        held = f"{len(t.datakinds)}, {len(t.local)} local"
        if t.not_published:
            held += f", {len(t.not_published)} not published"
        table.add_row(t.tile_id, t.region, t.split or "-", bbox, held)
    out_console().print(table)
    kinds = sorted({d for t in rows for d in t.datakinds})
    say(f"{len(rows)} tiles; datakinds: {', '.join(kinds)} (--json lists them per tile)")
    gone = sum(len(t.not_published) for t in rows)
    if gone:
        say(not_published(gone))
