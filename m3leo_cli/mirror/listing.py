"""``m3leo tiles``: the tile ids of a selection, with split, bbox and which datakinds each has.

Read from the manifest (no tile file is opened); "local" is a stat of the file's place in the
store. In the full edition a datakind ``_parquet.csv`` lists for a tile but whose shard (as
a download learnt) does not hold it is "not published", as download, verify and export say.
The people's table and ``--ids`` (one id a line, for ``--tiles-file``) come from the same rows
as ``--json``.
"""

from __future__ import annotations

from collections import Counter
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


def stats_report(settings: Settings, selection: Selection) -> dict[str, Any]:
    """``m3leo stats``: the manifest's counts (``catalog.stats.stats_report``), where, in the
    full edition, tiles a shard is known not to hold are not counted as tiles (full-edition
    rows and total get a ``not_published`` count).

    ``_parquet.csv`` lists every tile for every datakind; partial-coverage datakinds (gssic,
    gunw) hold only some of them. Once a download or an unpack has read a shard (its index is
    cached), each row says how many of its listed tiles are ``not_published`` and ``tiles``
    leaves them out; the total leaves out tiles no selected datakind publishes. Only the rows
    whose file is not in the store are looked up (one directory scan per datakind folder), so
    a downloaded store costs little more than the manifest read.
    """
    from ..catalog.stats import stats_report as manifest_report
    from ..errors import EmptySelectionError

    report = manifest_report(settings, selection)
    if selection.edition != "full":
        return report
    for row in report["rows"]:
        row["not_published"] = 0
    report["total"]["not_published"] = 0
    index_dir = Store(settings.data_dir).state_dir / "shard-index"
    if not any(index_dir.glob("*.json")):
        return report  # nothing learnt about any shard: nothing to leave out
    try:
        lost, listed = _not_local(settings, selection)
    except EmptySelectionError:
        return report
    if not lost:
        return report
    from ..full.unpacked import unpublished

    gone_paths = unpublished(settings, lost)
    gone_rows = [r for r in lost if (r["region"], r["path"]) in gone_paths]
    gone = Counter((r["region"], r["datakind"], r["split"]) for r in gone_rows)
    for row in report["rows"]:
        n = gone.get((row["region"], row["modality"], row["split"]), 0)
        row["tiles"] -= n
        row["not_published"] = n
    per_tile = Counter((r["region"], r["tile_id"]) for r in gone_rows)
    report["total"]["tiles"] -= sum(1 for k, n in per_tile.items() if listed.get(k) == n)
    report["total"]["not_published"] = sum(gone.values())
    return report


def _not_local(
    settings: Settings, selection: Selection
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
    """The selection's tile rows whose file is not in the store, and how many rows (datakinds)
    each of those tiles has. Local files are found by scanning each datakind's folder once."""
    import os

    import pyarrow as pa
    import pyarrow.compute as pc

    cols = ["edition", "region", "datakind", "tile_id", "split", "path", "shard"]
    table = select_table(settings, selection, ("tile",), cols)[0]
    table = table.filter(pc.and_(pc.equal(table["kind"], "tile"), pc.is_valid(table["tile_id"])))
    store = Store(settings.data_dir)
    lost: list[dict[str, Any]] = []
    for pair in pc.unique(
        pc.binary_join_element_wise(table["region"], table["datakind"], "\0")
    ).to_pylist():
        region, datakind = pair.split("\0")
        sub = table.filter(
            pc.and_(pc.equal(table["region"], region), pc.equal(table["datakind"], datakind))
        )
        here: list[str] = []
        folder = str(sub["path"][0].as_py()).rsplit("/", 1)[0]  # a datakind's one folder
        try:
            with os.scandir(store.local_path("full", region, folder)) as it:
                here += [f"{folder}/{e.name}" for e in it if e.is_file()]
        except (OSError, ValueError):
            pass
        local = pc.is_in(sub["path"], value_set=pa.array(here, pa.string()))
        missing = sub.filter(pc.invert(local))
        lost += missing.select(cols).to_pylist()
    keys = {(r["region"], r["tile_id"]) for r in lost}
    listed = Counter(
        (r["region"], r["tile_id"])
        for r in table.select(["region", "tile_id"]).to_pylist()
        if (r["region"], r["tile_id"]) in keys
    )
    return lost, dict(listed)
