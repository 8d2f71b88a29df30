"""The Parquet manifest: its schema, atomic writes, validated reads with predicate pushdown.

One file per edition and region (``Store.manifest_path``), sorted by (kind, datakind, split,
tile_id) and cut into small row groups, so a ``pyarrow.dataset`` filter on those keys skips
almost every row group (see docs/benchmarks.md). The file carries its own summary in the
Parquet key-value metadata (commit, datakinds, counts, extent), so ``regions``, ``modalities``
and ``catalog show`` never read a data page.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import ManifestCorruptError
from ..store.layout import fsync_dir

MANIFEST_VERSION = "1"
VERSION_KEY = b"m3leo.manifest_version"
SUMMARY_KEY = b"m3leo.summary"
SORT_KEYS = ("kind", "datakind", "split", "tile_id")
ROW_GROUP_ROWS = 16_384

SCHEMA = pa.schema(
    [
        pa.field("edition", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "tile" | "shard" | "aux"
        pa.field("datakind", pa.string()),
        pa.field("family", pa.string()),
        pa.field("year", pa.int16()),
        pa.field("tile_id", pa.string()),
        pa.field("split", pa.string()),
        pa.field("path", pa.string(), nullable=False),  # repo path (full tiles: unpacked path)
        pa.field("size", pa.int64()),
        pa.field("checksum_kind", pa.string()),  # "sha256" | "git-sha1"
        pa.field("checksum", pa.binary()),  # raw digest bytes
        pa.field("shard", pa.string()),  # full tiles: repo path of the shard holding the tile
        pa.field("row_group", pa.int32()),
        pa.field("row", pa.int64()),
        pa.field("lon_min", pa.float64()),
        pa.field("lat_min", pa.float64()),
        pa.field("lon_max", pa.float64()),
        pa.field("lat_max", pa.float64()),
        pa.field("commit", pa.string(), nullable=False),
    ]
)


def _ranks(column: pa.ChunkedArray | pa.Array) -> Any:
    """Order-preserving integer codes of a string column, nulls last (a fast sort key)."""
    import numpy as np

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    enc = pc.dictionary_encode(arr)
    order = pc.array_sort_indices(enc.dictionary).to_numpy()
    rank = np.empty(len(order) + 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    rank[len(order)] = len(order)  # nulls
    codes = pc.fill_null(enc.indices, len(order)).to_numpy(zero_copy_only=False)
    return rank[codes]


def sort_manifest(table: pa.Table) -> pa.Table:
    """Sort by SORT_KEYS (nulls last, stable). Dictionary ranks + numpy lexsort: seconds, not
    the tens of seconds a string sort of millions of rows takes."""
    import numpy as np

    if table.num_rows == 0:
        return table
    keys = [_ranks(table[k]) for k in reversed(SORT_KEYS)]  # lexsort: last key is primary
    return table.take(pa.array(np.lexsort(keys)))


def write_manifest(
    path: Path, table: pa.Table, summary: dict[str, Any], *, presorted: bool = False
) -> None:
    """Write ``table`` atomically: temp file in the same folder, fsync, ``os.replace``.

    A crash at any point leaves either the old manifest or the new one, never half of one.
    ``presorted``: the caller guarantees SORT_KEYS order (skips a sort of millions of rows).
    """
    table = table.select(SCHEMA.names).cast(SCHEMA)
    if not presorted:
        table = sort_manifest(table)
    meta = {VERSION_KEY: MANIFEST_VERSION.encode(), SUMMARY_KEY: json.dumps(summary).encode()}
    table = table.replace_schema_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".parquet.part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(
                table,
                fh,
                compression="zstd",
                row_group_size=ROW_GROUP_ROWS,
                write_statistics=True,
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _corrupt(path: Path, why: str) -> ManifestCorruptError:
    return ManifestCorruptError(
        f"{path} is not an m3leo manifest ({why})",
        "delete it or run `m3leo catalog refresh` (add --edition/--region) to rebuild it",
    )


def read_summary(path: Path) -> dict[str, Any]:
    """Validate the file is our manifest (schema + version key) and return its summary.

    Reads only the Parquet footer (cached per path, size and mtime: files are only ever
    replaced whole). Foreign or damaged files raise ManifestCorruptError.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise _corrupt(path, f"unreadable: {exc.strerror}") from None
    raw = _validated_summary(str(path), st.st_size, st.st_mtime_ns)
    return dict(json.loads(raw))


@functools.lru_cache(maxsize=64)
def _validated_summary(path_str: str, size: int, mtime_ns: int) -> bytes:
    path = Path(path_str)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise _corrupt(path, f"unreadable Parquet: {str(exc).splitlines()[0][:120]}") from None
    meta = schema.metadata or {}
    version = meta.get(VERSION_KEY)
    if version is None:
        raise _corrupt(path, "no m3leo.manifest_version key: a foreign Parquet file")
    if version.decode(errors="replace") != MANIFEST_VERSION:
        raise _corrupt(path, f"manifest version {version!r}, this m3leo reads {MANIFEST_VERSION}")
    got = [(f.name, f.type) for f in schema]
    want = [(f.name, f.type) for f in SCHEMA]
    if got != want:
        raise _corrupt(path, "its columns differ from the manifest schema")
    raw = meta.get(SUMMARY_KEY, b"{}")
    try:
        summary = json.loads(raw)
    except ValueError:
        raise _corrupt(path, "its summary metadata is not JSON") from None
    if not isinstance(summary, dict):
        raise _corrupt(path, "its summary metadata is not an object")
    return raw


def read_manifest(
    paths: Sequence[Path],
    filter: pc.Expression | None = None,
    columns: Sequence[str] | None = None,
    dictionary: Sequence[str] = (),
) -> pa.Table:
    """Read manifest files with predicate pushdown. Every file is validated first.

    ``dictionary`` columns come back dictionary-encoded (fast group-bys).
    """
    for p in paths:
        read_summary(p)
    if not paths:
        return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(columns)
    try:
        dataset = ds.dataset([str(p) for p in paths], schema=SCHEMA, format="parquet")
        table = dataset.to_table(filter=filter, columns=list(columns) if columns else None)
    except (pa.ArrowException, OSError) as exc:
        where = paths[0] if len(paths) == 1 else paths[0].parent.parent
        raise _corrupt(Path(where), f"unreadable data: {str(exc).splitlines()[0][:120]}") from None
    # encoded after the read: a dictionary-typed dataset schema would disable row-group pruning
    for name in dictionary:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.dictionary_encode(table[name]))
    return table.replace_schema_metadata(None)


def in_set(column: str, values: Sequence[Any]) -> pc.Expression:
    """``column`` is one of ``values`` (an equality when there is one, so stats prune best)."""
    field = pc.field(column)
    if len(values) == 1:
        return field == values[0]
    return field.isin(list(values))
