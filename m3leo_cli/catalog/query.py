"""Queries over the cached manifests: the one selection model, and manifest-level stats.

Everything here reads the local Parquet manifests only (never the network), so it works with
``HF_HUB_OFFLINE=1``. Filters are pushed down to pyarrow.dataset; the manifests are sorted by
(kind, datakind, split, tile_id), so a region + modality + split query reads a few row groups.
"""

from __future__ import annotations

import bisect
import difflib
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import spec
from ..config import Settings
from ..errors import (
    EmptySelectionError,
    M3leoError,
    ManifestNotFoundError,
    SelectionError,
    TileNotFoundError,
    UnknownModalityError,
)
from ..selection import Selection
from ..store.layout import Store
from .manifest import in_set, read_manifest, read_summary

STATS_KEYS = ("edition", "region", "modality", "split", "tiles", "bytes", "local_tiles")


def manifest_paths(settings: Settings, selection: Selection) -> dict[str, Path]:
    """region -> manifest path for the selection; every named region must have one."""
    store = Store(settings.data_dir)
    ed = selection.edition
    found = {
        r: store.manifest_path(ed, r)
        for r in selection.region_names
        if store.manifest_path(ed, r).exists()
    }
    missing = [r for r in selection.region_names if r not in found]
    if (selection.regions and missing) or not found:
        regions = missing if selection.regions else []
        raise ManifestNotFoundError(
            f"no {ed} manifest for {', '.join(missing)} in {store.manifest_root}",
            f"run `m3leo catalog refresh --edition {ed}"
            + "".join(f" --region {r}" for r in regions)
            + "` (needs the network or a mirror via HF_ENDPOINT)",
        )
    return found


def _wants(selection: Selection, datakind: str) -> bool:
    try:
        return selection.wants_datakind(datakind)
    except UnknownModalityError:  # a folder the spec does not know: only "everything" gets it
        return not (selection.modalities or selection.years)


def _no_datakind(selection: Selection, summaries: dict[str, dict[str, Any]]) -> SelectionError:
    wanted = ", ".join(selection.modalities) or "any"
    years = f" for year {', '.join(map(str, selection.years))}" if selection.years else ""
    parts = []
    for r, s in summaries.items():
        have = ", ".join(s.get("datakinds", {})) or "nothing"
        parts.append(f"region {r} has no {wanted} datakind{years} (it has: {have})")
    return EmptySelectionError(
        "; ".join(parts) + f" in the {selection.edition} edition",
        "pick a modality `m3leo modalities --region R` lists, or another --region/--edition",
    )


def _filter(selection: Selection, datakinds: list[str], kinds: Sequence[str]) -> pc.Expression:
    dk = in_set("datakind", datakinds)
    tile = (pc.field("kind") == "tile") & dk
    shard = (pc.field("kind") == "shard") & dk
    if selection.splits:
        tile = tile & in_set("split", selection.splits)
        shard = shard & in_set("split", selection.splits)
    if selection.tiles:
        tile = tile & in_set("tile_id", selection.tiles)
    if selection.edition == "full":
        tile = tile & pc.field("shard").is_valid()  # no shard in the listing: not available
    if selection.bbox is not None:
        w, s, e, n = selection.bbox
        tile = tile & (pc.field("lon_min") <= e) & (pc.field("lon_max") >= w)
        tile = tile & (pc.field("lat_min") <= n) & (pc.field("lat_max") >= s)
    parts = {"tile": tile, "shard": shard, "aux": pc.field("kind") == "aux"}
    expr = None
    for k in kinds:
        expr = parts[k] if expr is None else expr | parts[k]
    assert expr is not None
    return expr


def select(
    settings: Settings,
    selection: Selection,
    kinds: Sequence[str] = ("tile",),
    *,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Manifest rows matching ``selection`` (tile rows by default), sorted within each region.

    ``columns`` limits what is read (``kind`` and ``tile_id`` are always included). Raises
    EmptySelectionError saying why when nothing matches, TileNotFoundError for tile ids the
    manifests do not know, ManifestNotFoundError when a region has no cached manifest.
    """
    return _select(settings, selection, kinds, columns)[0]


def _plan(
    settings: Settings, selection: Selection
) -> tuple[dict[str, Path], dict[str, dict[str, Any]], list[str]]:
    """Manifest paths, their footer summaries and the datakinds the selection wants."""
    if selection.bbox is not None and selection.edition == "full":
        raise EmptySelectionError(
            "the full edition publishes no tile geometry, so --bbox cannot select from it",
            "use --edition miniset (its tiles have bboxes) or select full-edition tiles "
            "with --tiles/--tiles-file",
        )
    paths = manifest_paths(settings, selection)
    summaries = {r: read_summary(p) for r, p in paths.items()}
    all_dks = sorted({dk for s in summaries.values() for dk in s.get("datakinds", {})})
    datakinds = [dk for dk in all_dks if _wants(selection, dk)]
    if not datakinds:
        raise _no_datakind(selection, summaries)
    return paths, summaries, datakinds


def _select(
    settings: Settings,
    selection: Selection,
    kinds: Sequence[str],
    columns: Sequence[str] | None,
    dictionary: Sequence[str] = (),
) -> tuple[pa.Table, dict[str, dict[str, Any]], list[str], list[Path]]:
    paths, summaries, datakinds = _plan(settings, selection)
    files = list(paths.values())
    cols = None if columns is None else list(dict.fromkeys(["kind", "tile_id", *columns]))
    table = read_manifest(
        files, filter=_filter(selection, datakinds, kinds), columns=cols, dictionary=dictionary
    )
    if selection.tiles:
        _check_tiles(selection, files, table)
    if selection.limit is not None and "tile" in kinds:
        tiles = table.filter(pc.field("kind") == "tile")["tile_id"]
        keep = pc.unique(tiles.drop_null()).sort()[: selection.limit]
        table = table.filter((pc.field("kind") != "tile") | pc.field("tile_id").isin(keep))
    if table.num_rows == 0:
        raise _explain_empty(selection, summaries, datakinds)
    return table, summaries, datakinds, files


def _check_tiles(selection: Selection, files: list[Path], table: pa.Table) -> None:
    found = set(pc.unique(table["tile_id"].drop_null()).to_pylist())
    missing = [t for t in selection.tiles if t not in found]
    if not missing:
        return
    known = read_manifest(
        files,
        filter=(pc.field("kind") == "tile") & in_set("tile_id", missing),
        columns=["tile_id"],
    )
    unknown = [t for t in missing if t not in set(known["tile_id"].to_pylist())]
    if not unknown:
        return
    ids = read_manifest(files, filter=pc.field("kind") == "tile", columns=["tile_id"])
    universe = pc.unique(ids["tile_id"].drop_null()).sort().to_pylist()
    close = _close_ids(unknown[0], universe)
    where = f"the {selection.edition} manifest of {', '.join(r for r in selection.region_names)}"
    shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    raise TileNotFoundError(
        f"{len(unknown)} tile id(s) not in {where}: {shown}",
        ("did you mean " + " or ".join(close) + "? " if close else "")
        + "check the --region/--edition; `m3leo stats` shows what exists",
    )


def _close_ids(word: str, universe: list[str]) -> list[str]:
    if len(universe) <= 20_000:
        return difflib.get_close_matches(word, universe, n=3, cutoff=0.6)
    i = bisect.bisect_left(universe, word)  # ids sharing the longest prefix sit next to it
    return universe[max(0, i - 1) : i + 2]


def _explain_empty(
    selection: Selection, summaries: dict[str, dict[str, Any]], datakinds: list[str]
) -> EmptySelectionError:
    what = [f"edition {selection.edition}", f"region {', '.join(summaries)}"]
    what.append(f"datakind {', '.join(datakinds)}")
    if selection.splits:
        what.append(f"split {', '.join(selection.splits)}")
    if selection.tiles:
        what.append(f"{len(selection.tiles)} listed tile(s)")
    if selection.bbox is not None:
        b = ",".join(f"{v:g}" for v in selection.bbox)
        spans = []
        for r, s in summaries.items():
            if s.get("bbox"):
                spans.append(f"{r} spans " + ",".join(f"{v:.3f}" for v in s["bbox"]))
        return EmptySelectionError(
            f"bbox {b} overlaps no {selection.edition} tile of region "
            f"{', '.join(summaries)} ({'; '.join(spans) or 'no tile has a bbox'})",
            "check the order W,S,E,N and the region; `m3leo catalog show --json` gives each extent",
        )
    return EmptySelectionError("no tile matches " + ", ".join(what))


# ------------------------------------------------------------------------------------ stats


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
    if edition == "miniset":
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
        paths, summaries, datakinds = _plan(settings, selection)
        counts = _from_summaries(selection, summaries, datakinds)
        if not counts:
            raise _explain_empty(selection, summaries, datakinds)
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
                tiles = _select(settings, sub, ("tile",), [*KEYS, "tile_id"], dictionary=KEYS)[0]
                local = local_counts(store, selection.edition, tiles, folders)
    else:
        cols = [*KEYS] + (["shard"] if full else ["size"])
        tiles, summaries, datakinds, paths_l = _select(
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
