"""Manifest-level statistics: tiles and bytes by region x modality x split, remote and local.

Counts come from the manifests (and their summaries) without reading tile files; ``local_tiles``
looks at the store's folders.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import spec
from ..config import Settings
from ..errors import M3leoError, UnknownModalityError
from ..selection import Selection
from ..store.layout import Store
from .manifest import in_set, read_manifest
from .query import explain_empty, plan_query, select_table

STATS_KEYS = ("edition", "region", "modality", "split", "tiles", "bytes", "local_tiles")


KEYS = ["region", "datakind", "split"]


def _key(row: dict[str, Any]) -> tuple[str, str, str | None]:
    return (str(row["region"]), str(row["datakind"]), row["split"])


def _group(table: pa.Table, aggs: list[tuple[Any, str]]) -> dict[tuple, dict[str, Any]]:
    out = {}
    table = table.unify_dictionaries()  # one dictionary per column, across row groups/files
    for row in table.group_by(KEYS).aggregate(aggs).to_pylist():
        out[_key(row)] = row
    return out


def _tally(edition: str, tiles: pa.Table, shards: pa.Table | None) -> dict[tuple, dict[str, int]]:
    """(region, datakind, split) -> tiles, files, bytes.

    ``tiles``: tile rows (region, datakind, split, tile_id, and size for the miniset; shard when
    ``shards`` is None in the full edition). Full edition: ``shards`` given -> files and bytes are
    all those shard rows (exact, shards are per split); None -> the distinct shards the tiles
    reference (with tile-level filters), looked up in ``shard_sizes``.
    """
    out: dict[tuple, dict[str, int]] = {}
    if edition != "full":  # plain files: the miniset and your own (local) regions
        for k, r in _group(tiles, [([], "count_all"), ("size", "sum")]).items():
            n = int(r["count_all"])
            out[k] = {"tiles": n, "files": n, "bytes": int(r["size_sum"] or 0)}
        return out
    for k, r in _group(tiles, [([], "count_all")]).items():
        out[k] = {"tiles": int(r["count_all"]), "files": 0, "bytes": 0}
    assert shards is not None
    for k, r in _group(shards, [("size", "sum"), ("size", "count")]).items():
        if k in out:
            out[k].update(files=int(r["size_count"]), bytes=int(r["size_sum"] or 0))
    return out


def tally(table: pa.Table, edition: str) -> list[dict[str, Any]]:
    """Tiles, files and bytes per (region, datakind, split) of a whole manifest table."""
    is_tile = pc.equal(table["kind"], "tile")
    cols = {k: pc.dictionary_encode(table[k]) for k in KEYS}  # cheap group keys
    cols["size"] = table["size"]
    lean = pa.table(cols)
    shards = None
    if edition == "full":
        is_tile = pc.and_(is_tile, pc.is_valid(table["shard"]))
        shards = lean.filter(pc.equal(table["kind"], "shard"))
    tiles = lean.filter(is_tile)
    return _rows(_tally(edition, tiles, shards))


def _rows(counts: dict[tuple, dict[str, int]]) -> list[dict[str, Any]]:
    order = {s: i for i, s in enumerate(spec.SPLITS)}
    keys = sorted(counts, key=lambda k: (k[0], k[1], order.get(k[2], 9), k[2] or ""))
    return [{"region": k[0], "datakind": k[1], "split": k[2], **counts[k]} for k in keys]


def _folders(summaries: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    out = {}
    for region, s in summaries.items():
        for dk, info in s.get("datakinds", {}).items():
            out[(region, dk)] = info.get("folder") or f"{spec.get_region(region).partition}/{dk}"
    return out


def local_counts(
    store: Store, edition: str, tiles: pa.Table, folders: dict[tuple[str, str], str]
) -> dict[tuple, int]:
    """(region, datakind, split) -> tiles whose file is already in the store.

    One directory scan per datakind folder; a region with no store folder costs nothing.
    """
    out: dict[tuple, int] = {}
    for region in pc.unique(tiles["region"]).to_pylist():
        if not store.region_dir(edition, str(region)).is_dir():
            continue
        sub = tiles.filter(pc.equal(tiles["region"], region))
        for dk in pc.unique(sub["datakind"]).to_pylist():
            folder = folders.get((str(region), str(dk)))
            if folder is None:
                continue
            try:
                with os.scandir(store.local_path(edition, str(region), folder)) as it:
                    stems = [e.name.rsplit(".", 1)[0] for e in it
                             if e.name.endswith((".tif", ".nc")) and e.is_file()]  # fmt: skip
            except (OSError, ValueError):
                continue
            if not stems:
                continue
            part = sub.filter(pc.equal(sub["datakind"], dk))
            hit = pc.is_in(part["tile_id"], value_set=pa.array(stems, pa.string()))
            part = part.select(KEYS).append_column("local", pc.cast(hit, pa.int64()))
            for k, r in _group(part, [("local", "sum")]).items():
                out[k] = int(r["local_sum"] or 0)
    return out


def _from_summaries(
    selection: Selection, summaries: dict[str, dict[str, Any]], datakinds: list[str]
) -> dict[tuple, dict[str, int]]:
    """Counts straight from the manifest footers: exact when no tile-level filter is given."""
    out: dict[tuple, dict[str, int]] = {}
    for region, s in summaries.items():
        for dk in datakinds:
            for split, c in s.get("datakinds", {}).get(dk, {}).get("splits", {}).items():
                sp = None if split == "none" else split
                if selection.splits and sp not in selection.splits:
                    continue
                if c["tiles"]:
                    out[(region, dk, sp)] = {k: int(c[k]) for k in ("tiles", "files", "bytes")}
    return out


def stats(settings: Settings, selection: Selection, *, files: bool = False) -> list[dict[str, Any]]:
    """Rows ``edition, region, modality (datakind), split, tiles, bytes, local_tiles``.

    ``files=True`` adds a ``files`` count (shards for the full edition) for the people's table.
    Without tile-level filters (--tiles, --bbox, --limit) the counts come from the manifest
    footers and only datakinds that have a local folder are read (for ``local_tiles``);
    otherwise only the needed columns are read, dictionary-encoded.
    """
    store = Store(settings.data_dir)
    full = selection.edition == "full"
    tile_level = bool(selection.tiles or selection.limit or selection.bbox)
    if not tile_level:
        paths, summaries, datakinds = plan_query(settings, selection)
        counts = _from_summaries(selection, summaries, datakinds)
        if not counts:
            raise explain_empty(selection, summaries, datakinds)
        folders = _folders(summaries)
        regions = sorted(
            {k[0] for k in counts if store.region_dir(selection.edition, k[0]).is_dir()}
        )
        local: dict[tuple, int] = {}
        if regions:
            sub = replace(selection, regions=tuple(regions), limit=None)
            wanted = sorted(
                {
                    k[1]
                    for k in counts
                    if k[0] in regions
                    and _known(k[1])
                    and _has_local(store, selection.edition, k[0], folders.get((k[0], k[1])))
                }
            )
            if wanted:
                sub = replace(sub, modalities=tuple(wanted), years=())
                tiles = select_table(settings, sub, ("tile",), [*KEYS, "tile_id"], dictionary=KEYS)[
                    0
                ]
                local = local_counts(store, selection.edition, tiles, folders)
    else:
        cols = [*KEYS] + (["shard"] if full else ["size"])
        tiles, summaries, datakinds, paths_l = select_table(
            settings, selection, ("tile",), cols, dictionary=[*KEYS, "kind"]
        )
        shards = None
        if full:
            expr = (pc.field("kind") == "shard") & in_set("datakind", datakinds)
            if selection.splits:
                expr = expr & in_set("split", selection.splits)
            shards = read_manifest(
                paths_l, filter=expr, columns=[*KEYS, "size", "path"], dictionary=KEYS
            )
            shards = shards.filter(pc.is_in(shards["path"], value_set=pc.unique(tiles["shard"])))
        counts = _tally(selection.edition, tiles, shards)
        local = local_counts(store, selection.edition, tiles, _folders(summaries))
    rows = []
    for t in _rows(counts):
        key = (t["region"], t["datakind"], t["split"])
        row = {
            "edition": selection.edition,
            "region": t["region"],
            "modality": t["datakind"],
            "split": t["split"],
            "tiles": t["tiles"],
            "bytes": t["bytes"],
            "local_tiles": local.get(key, 0),
        }
        if files:
            row["files"] = t["files"]
        rows.append(row)
    return rows


def _known(datakind: str) -> bool:
    try:
        spec.parse_datakind(datakind)
    except UnknownModalityError:
        return False
    return True


def _has_local(store: Store, edition: str, region: str, folder: str | None) -> bool:
    if folder is None:
        return False
    try:
        return store.local_path(edition, region, folder).is_dir()
    except M3leoError:
        return False


def distinct_tiles(settings: Settings, selection: Selection) -> int:
    """How many different tiles the selection holds, whatever the number of modalities.

    The manifest footers count each region's distinct tiles; with any filter the tile ids are
    read (one dictionary-encoded column).
    """
    filtered = bool(
        selection.modalities
        or selection.splits
        or selection.years
        or selection.tiles
        or selection.limit
        or selection.bbox
    )
    if not filtered:
        _paths, summaries, _dks = plan_query(settings, selection)
        if all(s.get("tiles") is not None for s in summaries.values()):
            return sum(int(s["tiles"]) for s in summaries.values())
    table = select_table(settings, selection, ("tile",), ["region", "tile_id"], ["region"])[0]
    table = table.filter(pc.equal(table["kind"], "tile"))
    pairs = pc.binary_join_element_wise(
        pc.cast(table["region"], pa.string()), table["tile_id"], "/"
    )
    return int(pc.count_distinct(pairs).as_py())


def stats_report(settings: Settings, selection: Selection) -> dict[str, Any]:
    """``m3leo stats``: ``rows`` (with ``files``) and a ``total`` whose ``tiles`` are distinct
    tiles (summing rows would count a tile once per modality and split)."""
    rows = stats(settings, selection, files=True)
    total = {
        "tiles": distinct_tiles(settings, selection),
        "files": sum(r["files"] for r in rows),
        "bytes": sum(r["bytes"] for r in rows),
    }
    return {"rows": rows, "total": total}
