"""`m3leo show TILE` and `m3leo map --region R`: pictures of a tile and of a region's tiles."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app
from .options import DataDir, Edition, Modalities, Regions, edition_for, settings_from
from .render import say

OutFile = typer.Option(..., "--out", "-o", help="Picture to write.")


@app.command("show")
def show_cmd(
    tile: str = typer.Argument(..., help="Tile id (13 hex characters)."),
    out: Path = OutFile,
    edition: Edition = None,
    region: Regions = None,
    modality: Modalities = None,
    month: int | None = typer.Option(None, "--month", help="S2 RGB month 1-12 (default: median)."),
    data_dir: DataDir = None,
) -> None:
    """One PNG of a local tile across its modalities, titled with id, region, split and bounds.

    Example: m3leo show 020d259a89240 --edition miniset --out tile.png
    """
    from ..tiles.preview import render_tile

    settings = settings_from(data_dir=data_dir)
    ed = edition_for(settings, edition, region)
    path, info = render_tile(
        settings, tile, out, edition=ed, regions=region or (), modalities=modality or (),
        month=month,
    )  # fmt: skip
    missing = [f.datakind for f in info.files if not f.local]
    if missing:
        say(f"not local (not drawn): {', '.join(missing)}")
    say(f"wrote {path}")


@app.command("map")
def map_cmd(
    region: list[str] = typer.Option(
        ..., "--region", "-r", help="Region to draw (repeatable: all of them on one map)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png or FILE.html."),
    edition: Edition = None,
    color_by: str = typer.Option(
        "split",
        "--color-by",
        help="split, or local (local: every file of the tile is in the store; partly local: "
        "some are).",
    ),
    data_dir: DataDir = None,
) -> None:
    """Draw regions' tiles from the manifest, coloured by split or by local availability.

    Example: m3leo map --region europe --out europe.html --color-by local
    """
    from ..tiles.preview import render_map

    settings = settings_from(data_dir=data_dir)
    ed = edition_for(settings, edition, region)
    path, n = render_map(settings, region, out, edition=ed, color_by=color_by)
    say(f"wrote {path} ({n} tiles)")
