"""``parquet``: shards ``<split>/<split>-%06d.parquet`` of ``--shard-size`` rows, one row per tile.

Columns: ``tile_id``, ``split``, ``region``, ``crs``, ``bounds`` (W, S, E, N), ``missing`` (absent
layers), then one column per layer holding the (bands, H, W) array as nested lists
``list<list<list<T>>>``, null where the tile lacks that layer. Nested lists are what both
pyarrow and the Hugging Face ``datasets`` Parquet loader read without extension types, and they
carry per-tile shapes (native grids vary by latitude). Band names, dtype and role are in each
layer field's metadata. Rows are written in row groups of a few tiles, so memory stays bounded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Exporter, Failure, Unit, UnitResult
from .decode import decode_sample
from .outputs import HashingWriter, promote, writing
from .samples import Sample

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

ROWS_PER_GROUP = 8
ROW_GROUP_BYTES = 48 << 20  # ...or fewer: the writer holds a row group (and its encoding) in memory
# Parquet has no 8/16-bit physical type: uint8/uint16 values are stored as INT32. Snappy takes
# that padding back for less CPU than writing and hashing the padded bytes (zstd-1 packs ~2x
# tighter at ~1.5x the CPU); every Parquet reader has it. Lossless either way.
COMPRESSION = "snappy"
COMPRESSION_LEVEL = None


def nested_lists(arrays: Sequence[np.ndarray | None], value_type: pa.DataType) -> pa.Array:
    """(bands, H, W) arrays (None = null) -> one ``list<list<list<T>>>`` Arrow array."""
    import numpy as np
    import pyarrow as pa

    present = [a for a in arrays if a is not None]
    np_type = value_type.to_pandas_dtype()
    flat = np.concatenate([a.ravel() for a in present]) if present else np.empty(0, np_type)
    values = pa.array(flat, type=value_type)
    inner, mid, outer = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], [0]
    nulls = []
    for a in arrays:
        if a is None:
            outer.append(0)
            nulls.append(True)
            continue
        b, h, w = a.shape
        inner.append(np.full(b * h, w, np.int64))
        mid.append(np.full(b, h, np.int64))
        outer.append(b)
        nulls.append(False)
    i_off = pa.array(np.cumsum(np.concatenate(inner)), pa.int32())
    m_off = pa.array(np.cumsum(np.concatenate(mid)), pa.int32())
    o_off = pa.array(np.cumsum(outer), pa.int32())
    level1 = pa.ListArray.from_arrays(i_off, values)
    level2 = pa.ListArray.from_arrays(m_off, level1)
    return pa.ListArray.from_arrays(o_off, level2, mask=pa.array(nulls, pa.bool_()))


class ParquetExporter(Exporter):
    name = "parquet"
    summary = (
        "Parquet shards, one row per tile, one nested-list column per layer (pyarrow, datasets)"
    )
    sharded = True

    _schema: pa.Schema | None = None

    def path_of(self, unit: Unit) -> Path:
        return self.out / f"{unit.key}.parquet"

    def outputs(self, unit: Unit) -> list[Path]:
        return [self.path_of(unit)]

    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._schema = self._make_schema()
        return self._schema

    def _make_schema(self) -> pa.Schema:
        import numpy as np
        import pyarrow as pa

        fields = [
            pa.field("tile_id", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("region", pa.string(), nullable=False),
            pa.field("crs", pa.string()),
            pa.field("bounds", pa.list_(pa.float64(), 4)),
            pa.field("missing", pa.list_(pa.string())),
        ]
        for lay in self.layers:
            info = self.layer_info[lay.name]
            vt = pa.from_numpy_dtype(np.dtype(info["dtype"]))
            meta = {
                "bands": json.dumps(info["bands"]),
                "dtype": info["dtype"],
                "role": lay.role,
                "axes": "bands,y,x",
            }
            fields.append(pa.field(lay.name, pa.list_(pa.list_(pa.list_(vt))), metadata=meta))
        return pa.schema(fields, metadata={"m3leo.export": json.dumps({"format": self.name})})

    def process(self, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]] | Failure:
        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        meta = decoded.meta()
        arrays = {name: arr.data for name, arr in decoded.layers.items()}
        return meta, self._table(self.schema(), [(meta, arrays)])  # built in the worker thread

    def _table(self, schema: pa.Schema, rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> Any:
        import pyarrow as pa

        cols: list[pa.Array] = [
            pa.array([m["tile_id"] for m, _ in rows], pa.string()),
            pa.array([m["split"] for m, _ in rows], pa.string()),
            pa.array([m["region"] for m, _ in rows], pa.string()),
            pa.array([m["crs"] for m, _ in rows], pa.string()),
            pa.array([m["bounds"] for m, _ in rows], schema.field("bounds").type),
            pa.array([m["missing"] for m, _ in rows], pa.list_(pa.string())),
        ]
        for lay in self.layers:
            vt = schema.field(lay.name).type.value_type.value_type.value_type
            cols.append(nested_lists([a.get(lay.name) for _, a in rows], vt))
        return pa.Table.from_arrays(cols, schema=schema)

    def write(self, unit: Unit, items: Iterator[Any]) -> UnitResult:
        import pyarrow as pa
        import pyarrow.parquet as pq

        res = UnitResult(unit.key)
        path = self.path_of(unit)
        schema = self.schema()
        with writing(path) as fh:
            hw = HashingWriter(fh)
            meta_cols = [f.name for f in schema if f.name not in self.layer_info]
            with pq.ParquetWriter(
                hw,
                schema,
                compression=COMPRESSION,
                compression_level=COMPRESSION_LEVEL,
                # dictionaries and min/max statistics pay off for the metadata columns only;
                # on tensor values they cost several times the write itself
                use_dictionary=meta_cols,
                write_statistics=meta_cols,
            ) as writer:
                batch: list[pa.Table] = []
                for item in items:
                    if isinstance(item, Failure):
                        res.failures.append(item)
                        continue
                    meta, row = item
                    batch.append(row)
                    res.samples.append(meta)
                    pending = sum(t.nbytes for t in batch)
                    if len(batch) >= ROWS_PER_GROUP or pending >= ROW_GROUP_BYTES:
                        writer.write_table(pa.concat_tables(batch), row_group_size=len(batch))
                        batch = []
                if batch:
                    writer.write_table(pa.concat_tables(batch), row_group_size=len(batch))
                elif not res.samples:
                    writer.write_table(schema.empty_table())
            fh.flush()
        promote(path)
        res.files[path.relative_to(self.out).as_posix()] = hw.info()
        return res
