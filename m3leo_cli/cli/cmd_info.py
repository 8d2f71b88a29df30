"""`m3leo info TILE`: where a tile is, which modalities exist remotely and locally, its bands."""

from __future__ import annotations

import textwrap
from typing import Any

import typer

from .. import spec
from .app import app
from .options import DataDir, Edition, JsonOut, Modalities, Regions, edition_for, settings_from
from .render import out_console, print_json, say


@app.command("info")
def info_cmd(
    tile: str = typer.Argument(..., help="Tile id (13 hex characters)."),
    edition: Edition = None,
    region: Regions = None,
    modality: Modalities = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
) -> None:
    """Region, split and bounds of a tile; its modalities remotely and locally; each file's bands.

    Example: m3leo info 020d259a89240 --edition miniset --json
    """
    from ..tiles.info import locate_tile
    from ..tiles.model import DECODING, repair_command

    settings = settings_from(data_dir=data_dir)
    info = locate_tile(
        settings,
        tile,
        edition=edition_for(settings, edition, region),
        regions=region or (),
        modalities=modality or (),
    )
    if json_out:
        print_json(info.as_dict())
        return
    con = out_console()
    width = max(40, con.width)  # the terminal's (80 columns fit), 200 when piped

    def put(text: str, indent: str = "  ", follow: str = "    ") -> None:
        for line in textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=follow,
                                  break_on_hyphens=False, break_long_words=False):  # fmt: skip
            con.print(line, markup=False)

    bbox = ", ".join(f"{v:.5f}" for v in info.bbox) if info.bbox else "unknown (full edition)"
    con.print(f"tile     {info.tile_id}", markup=False)
    con.print(f"edition  {info.edition}", markup=False)
    con.print(f"region   {info.region}", markup=False)
    con.print(f"split    {info.split or '?'}", markup=False)
    put(f"bounds   {bbox}  (W, S, E, N; EPSG:4326)", "", "         ")
    for f in info.files:
        state = "local " if f.local else "remote"
        con.print(f"\n{f.datakind}  [{state}]", markup=False)
        _path(con, f.path, width)
        if f.error:
            put(f.error)
            put(f"fix: {repair_command(f.local_path)}")
        elif f.bands is not None:
            family = spec.parse_datakind(f.datakind).family.name
            put(f"{len(f.bands)} bands, {f.dtype}, shape {f.shape}")
            put("bands: " + ", ".join(f.bands), follow="         ")
            put(f"values: {DECODING.get(family, 'as stored')}", follow="          ")
    if not any(f.local for f in info.files):
        from ..catalog.editions import other_edition_with_data

        other = other_edition_with_data(settings, info.edition, [info.region])
        if other is not None:
            say(f"hint: the store holds {other} tiles of {info.region}: add --edition {other}")
        con.print("\nnothing local; get it with:", markup=False)
        con.print(f"  {info.download_command()}", markup=False)


def _path(con: Any, path: str, width: int) -> None:
    """A file's repo path under its header, cut after a `/` where it is wider than the line."""
    line = "  "
    for part in path.split("/"):
        piece = part if line.strip() == "" else "/" + part
        if len(line) + len(piece) > width and line.strip():
            con.print(line + "/", markup=False)
            line, piece = "    ", part
        line += piece
    con.print(line, markup=False)
