"""Build a manifest table from a Hub tree listing plus the repo's small definition files.

Pure: no network, no store. ``refresh`` feeds it what the Hub returned; tests feed it a listing
made from a folder. Row-heavy work (the full edition's tiles x datakinds) is vectorised with
pyarrow; only the listing itself (thousands of shards, or ~50k miniset files) is a Python loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from .. import spec
from ..errors import HubProtocolError, UnknownModalityError, UnsafePathError
from ..selection import TILE_ID_RE
from ..store.layout import safe_join
from .manifest import SCHEMA, sort_manifest

_PARTITION_RE = re.compile(r"^[a-z][a-z0-9-]*_partitions_aschips_[0-9a-f]+$")
_SHARD_RE = re.compile(r"^(?P<split>train|val|test)_(?P<pid>[0-9a-f]+)\.zstd\.parquet$")
_VIRTUAL_ROOT = Path("/m3leo-virtual-store-root")


class EntryLike(Protocol):
    """What the builder needs from a tree entry (``hub.TreeEntry`` fits)."""

    path: str
    type: str
    size: int
    oid: str
    lfs_sha256: str | None


@dataclass
class Built:
    table: pa.Table
    warnings: list[str] = field(default_factory=list)


def definition_files(edition: str, paths: Iterable[str]) -> dict[str, str]:
    """Which root files to fetch: ``{"splits": ..., "parquet": ..., "geojson": ...}``."""
    out: dict[str, str] = {}
    for p in paths:
        if "/" in p:
            continue
        if edition == "full" and p.endswith("_parquet.csv"):
            out["parquet"] = p
        elif edition == "full" and p.endswith(".csv") and "_splits_" in p:
            out["splits"] = p
        elif edition == "miniset" and p.endswith("_miniset.csv"):
            out["splits"] = p
        elif edition == "miniset" and p.endswith(".geojson"):
            out["geojson"] = p
    return out


def _checksum(e: EntryLike) -> tuple[str | None, bytes | None]:
    try:
        if e.lfs_sha256:
            return "sha256", bytes.fromhex(e.lfs_sha256)
        if e.oid:
            return "git-sha1", bytes.fromhex(e.oid)
    except ValueError:
        pass
    return None, None


def _datakind_info(name: str) -> tuple[str | None, int | None]:
    try:
        dk = spec.parse_datakind(name)
    except UnknownModalityError:
        return None, None
    return dk.family.name, dk.year


def read_csv_text(data: bytes, name: str, columns: tuple[str, ...]) -> pa.Table:
    """A definition CSV as strings (ids like ``0123456789012`` must not become integers)."""
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns}, include_columns=list(columns)
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError) as exc:
        raise HubProtocolError(
            f"{name} is not the expected CSV (columns {', '.join(columns)}): "
            f"{str(exc).splitlines()[0][:100]}",
            "the repo may be damaged or HF_ENDPOINT may not serve M3LEO; try --revision",
        ) from None
    return table


def read_geojson_bboxes(data: bytes, name: str) -> dict[str, tuple[float, float, float, float]]:
    """identifier -> (lon_min, lat_min, lon_max, lat_max) from the miniset GeoJSON."""
    try:
        doc = json.loads(data)
        out: dict[str, tuple[float, float, float, float]] = {}
        for feat in doc["features"]:
            ident = str(feat["properties"]["identifier"])
            ring = feat["geometry"]["coordinates"][0]
            lons = [float(c[0]) for c in ring]
            lats = [float(c[1]) for c in ring]
            out[ident] = (min(lons), min(lats), max(lons), max(lats))
    except (ValueError, KeyError, TypeError, IndexError):
        raise HubProtocolError(
            f"{name} is not a GeoJSON FeatureCollection of tile polygons",
            "the repo may be damaged or HF_ENDPOINT may not serve M3LEO; try --revision",
        ) from None
    return out


def build_manifest(
    edition: str,
    region: str,
    commit: str,
    entries: Iterable[EntryLike],
    files: Mapping[str, bytes],
) -> Built:
    """The manifest table of one edition+region, already in ``manifest.SORT_KEYS`` order.

    ``files`` maps the ``definition_files`` roles ("splits", "parquet", "geojson") to their
    bytes; a missing role is a warning."""
    warnings: list[str] = []
    rows: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    datakind_dirs: dict[str, str] = {}  # datakind -> "<partition>/<datakind>"
    shard_paths: set[str] = set()

    def add(kind: str, path: str, **kw: Any) -> None:
        rows["kind"].append(kind)
        rows["path"].append(path)
        for name in ("datakind", "family", "year", "tile_id", "split", "size"):
            rows[name].append(kw.get(name))
        rows["checksum_kind"].append(kw.get("checksum_kind"))
        rows["checksum"].append(kw.get("checksum"))

    file_entries = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for e in entries:
        try:
            safe_join(_VIRTUAL_ROOT, e.path)
        except UnsafePathError as exc:
            why = "it would escape the store" if "escape" in exc.message else exc.message
            warnings.append(f"dropped listing entry {e.path[:80]!r}: {why}")
            continue
        if e.path in seen:  # listed twice: one file, one transfer (two would share a .part)
            duplicates.append(e.path)
            continue
        seen.add(e.path)
        parts = e.path.split("/")
        if e.type == "directory":
            if len(parts) == 2 and _PARTITION_RE.match(parts[0]):
                datakind_dirs.setdefault(parts[1], e.path)
            continue
        if e.type != "file":
            continue
        file_entries.append(e)
        if len(parts) == 3 and _PARTITION_RE.match(parts[0]):
            datakind_dirs.setdefault(parts[1], f"{parts[0]}/{parts[1]}")

    if duplicates:
        warnings.append(
            f"dropped {len(duplicates)} duplicate listing entr"
            f"{'y' if len(duplicates) == 1 else 'ies'} (first: {duplicates[0]!r})"
        )
    splits: dict[str, str] = {}
    bboxes: dict[str, tuple[float, float, float, float]] = {}
    pq_table: pa.Table | None = None
    if edition in ("miniset", "local"):  # plain files; local is laid out like the miniset
        if "splits" in files:
            t = read_csv_text(files["splits"], "the split CSV", ("identifier", "split"))
            splits = dict(zip(t["identifier"].to_pylist(), t["split"].to_pylist(), strict=True))
        else:
            warnings.append("no split CSV in the repo: tiles have no split")
        if "geojson" in files:
            bboxes = read_geojson_bboxes(files["geojson"], "the miniset GeoJSON")
        else:
            warnings.append("no GeoJSON in the repo: tiles have no bbox")
    elif "parquet" in files:
        pq_table = read_csv_text(
            files["parquet"], "the _parquet.csv", ("identifier", "split", "parquet_identifier")
        )
    else:
        warnings.append("no _parquet.csv in the repo: only shards are listed, no tiles")

    for e in file_entries:
        kind_, digest = _checksum(e)
        common = {"size": e.size, "checksum_kind": kind_, "checksum": digest}
        parts = e.path.split("/")
        if len(parts) != 3 or not _PARTITION_RE.match(parts[0]):
            add("aux", e.path, **common)
            continue
        dk_name, fname = parts[1], parts[2]
        family, year = _datakind_info(dk_name)
        dk = {"datakind": dk_name, "family": family, "year": year}
        if edition == "full":
            m = _SHARD_RE.match(fname)
            if m:
                shard_paths.add(e.path)
                add("shard", e.path, split=m.group("split"), **dk, **common)
            else:
                add("aux", e.path, **common)
            continue
        stem, _, ext = fname.rpartition(".")
        if not TILE_ID_RE.match(stem) or ext not in ("tif", "nc"):
            add("aux", e.path, **common)
            continue
        if family is None:
            warnings.append(f"unknown datakind folder {dk_name!r}: its tiles cannot be selected")
        add("tile", e.path, tile_id=stem, split=splits.get(stem), **dk, **common)

    n = len(rows["kind"])
    listed = pa.table(
        {
            "edition": _repeat(edition, n),
            "region": _repeat(region, n),
            "kind": pa.array(rows["kind"], pa.string()),
            "datakind": pa.array(rows["datakind"], pa.string()),
            "family": pa.array(rows["family"], pa.string()),
            "year": pa.array(rows["year"], pa.int16()),
            "tile_id": pa.array(rows["tile_id"], pa.string()),
            "split": pa.array(rows["split"], pa.string()),
            "path": pa.array(rows["path"], pa.string()),
            "size": pa.array(rows["size"], pa.int64()),
            "checksum_kind": pa.array(rows["checksum_kind"], pa.string()),
            "checksum": pa.array(rows["checksum"], pa.binary()),
        }
    )
    listed = _with_bboxes(listed, bboxes)
    tables = [sort_manifest(_complete(listed, commit))]  # aux < shard < tile: full tiles follow
    if pq_table is not None:
        tables.extend(
            _full_tiles(edition, region, commit, pq_table, datakind_dirs, shard_paths, warnings)
        )
    return Built(pa.concat_tables(tables).cast(SCHEMA), warnings)


def _with_bboxes(table: pa.Table, bboxes: Mapping[str, tuple[float, ...]]) -> pa.Table:
    ids = table["tile_id"].to_pylist()
    cols = ([], [], [], [])  # type: tuple[list[float | None], ...]
    for tid in ids:
        box = bboxes.get(tid) if tid is not None else None
        for i in range(4):
            cols[i].append(box[i] if box else None)
    for name, values in zip(("lon_min", "lat_min", "lon_max", "lat_max"), cols, strict=True):
        table = table.append_column(name, pa.array(values, pa.float64()))
    return table


def _repeat(value: object, n: int, type_: pa.DataType | None = None) -> pa.Array:
    return pa.repeat(pa.scalar(value, type_ or pa.string()), n)


def _complete(table: pa.Table, commit: str) -> pa.Table:
    """Add the columns a table lacks (as nulls) and the commit, in schema order."""
    n = table.num_rows
    cols = {}
    for f in SCHEMA:
        if f.name == "commit":
            cols[f.name] = _repeat(commit, n)
        elif f.name in table.column_names:
            cols[f.name] = table[f.name]
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=SCHEMA)


def _full_tiles(
    edition: str,
    region: str,
    commit: str,
    pq_table: pa.Table,
    datakind_dirs: Mapping[str, str],
    shard_paths: set[str],
    warnings: list[str],
) -> list[pa.Table]:
    """Full edition: one tile row per ``_parquet.csv`` identifier per datakind folder."""
    ids = pq_table["identifier"].combine_chunks()
    bad = pc.invert(pc.match_substring_regex(ids, r"^[0-9a-f]{13}$"))
    if pc.any(bad).as_py():
        n_bad = pc.sum(bad.cast(pa.int64())).as_py()
        warnings.append(f"_parquet.csv: dropped {n_bad} rows whose identifier is not a tile id")
        pq_table = pq_table.filter(pc.invert(bad))
    # (split, tile_id) order once, so every datakind's rows come out sorted
    pq_table = pq_table.sort_by([("split", "ascending"), ("identifier", "ascending")])
    ids = pq_table["identifier"].combine_chunks()
    split = pq_table["split"].combine_chunks()
    pid = pq_table["parquet_identifier"].combine_chunks()
    n = len(ids)
    existing = pa.array(sorted(shard_paths), pa.string())
    out = []
    for dk_name, folder in sorted(datakind_dirs.items()):
        family, year = _datakind_info(dk_name)
        if family is None:
            warnings.append(f"unknown datakind folder {dk_name!r}: no tile rows for it")
            continue
        ext = spec.FAMILIES[family].ext
        path = pc.binary_join_element_wise(folder + "/", ids, "." + ext, "")
        shard = pc.binary_join_element_wise(folder + "/", pid, ".zstd.parquet", "")
        shard = pc.if_else(pc.is_in(shard, value_set=existing), shard, pa.scalar(None, pa.string()))
        t = pa.table(
            {
                "edition": _repeat(edition, n),
                "region": _repeat(region, n),
                "kind": _repeat("tile", n),
                "datakind": _repeat(dk_name, n),
                "family": _repeat(family, n),
                "year": _repeat(year, n, pa.int16()),
                "tile_id": ids,
                "split": split,
                "path": path,
                "shard": shard,
            }
        )
        out.append(_complete(t, commit))
    return out
