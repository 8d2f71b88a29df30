"""``m3leo tiles``: the tile ids of a selection, with split, bbox and which datakinds each has.

Read from the manifest (no tile file is opened); "local" is a stat of the file's place in the
store. In the full edition a datakind ``_parquet.csv`` lists for a tile but whose shard (as
a download learnt) does not hold it is "not published", as download, verify and export say.
The people's table and ``--ids`` (one id a line, for ``--tiles-file``) come from the same rows
as ``--json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import spec
from ..catalog.query import select_table
from ..config import Settings
from ..selection import Selection
from ..store.layout import Store

_COLUMNS = [
    "edition",
    "region",
    "datakind",
    "tile_id",
    "split",
    "path",
    "shard",
    "lon_min",
    "lat_min",
    "lon_max",
    "lat_max",
]


@dataclass
class TileEntry:
    """One tile of the selection: where it is, and which datakinds exist / are local."""

    tile_id: str
    region: str
    split: str | None
    bbox: tuple[float, float, float, float] | None  # (W, S, E, N); None in the full edition
    datakinds: list[str] = field(default_factory=list)  # published for this tile
    local: list[str] = field(default_factory=list)  # of those, in the store
    not_published: list[str] = field(default_factory=list)  # listed, but absent from the shard

    def as_dict(self) -> dict[str, Any]:
        return {
            "tile_id": self.tile_id,
            "region": self.region,
            "split": self.split,
            "bbox": list(self.bbox) if self.bbox else None,
            "datakinds": self.datakinds,
            "local": self.local,
            "not_published": self.not_published,
        }


def list_tiles(settings: Settings, selection: Selection) -> list[TileEntry]:
    """The tiles of ``selection`` sorted by region, split and id (EmptySelectionError when
    none: the same explanations as every selection)."""
    table = select_table(settings, selection, ("tile",), _COLUMNS)[0]
    store = Store(settings.data_dir)
    tiles: dict[tuple[str, str], TileEntry] = {}
    rows = [r for r in table.to_pylist() if r["kind"] == "tile" and r["tile_id"] is not None]
    lost = [r for r in rows if not store.local_path(r["edition"], r["region"], r["path"]).is_file()]
    gone: set[tuple[str, str]] = set()
    if selection.edition == "full" and lost:
        from ..full.unpacked import unpublished

        gone = unpublished(settings, lost)
    missing = {(r["region"], r["path"]) for r in lost}
    for r in rows:
        key = (r["region"], r["tile_id"])
        entry = tiles.get(key)
        if entry is None:
            bbox = None
            if r["lon_min"] is not None:
                bbox = (r["lon_min"], r["lat_min"], r["lon_max"], r["lat_max"])
            entry = tiles[key] = TileEntry(r["tile_id"], r["region"], r["split"], bbox)
        where = (r["region"], r["path"])
        if where in gone:
            entry.not_published.append(r["datakind"])
            continue
        entry.datakinds.append(r["datakind"])
        if where not in missing:
            entry.local.append(r["datakind"])
    order = {s: i for i, s in enumerate(spec.SPLITS)}
    out = sorted(tiles.values(), key=lambda t: (t.region, order.get(t.split or "", 9), t.tile_id))
    for t in out:
        t.datakinds.sort()
        t.local.sort()
    return out
