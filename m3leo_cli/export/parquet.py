"""``parquet``: shards ``<split>/<split>-%06d.parquet`` of ``--shard-size`` rows, one row per tile.

Columns: ``tile_id``, ``split``, ``region``, ``crs``, ``bounds`` (W, S, E, N), ``missing`` (absent
layers), then one column per layer: ``struct<shape: list<int32>, data: binary>`` holding the
(bands, H, W) array as its raw little-endian bytes in the stored dtype (null where the tile lacks
that layer). Raw bytes decode at memory speed (nested lists cost a repetition level per value:
seven times slower to read, see docs/benchmarks.md), keep each tile's shape (native grids vary by
latitude) and need no extension type. Band names, dtype and role are in each layer field's
metadata. Rows are written in row groups of a few tiles, so memory stays bounded.
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
# Snappy: the cheapest codec every Parquet reader has (zstd-1 packs tighter at ~1.5x the CPU).
COMPRESSION = "snappy"
COMPRESSION_LEVEL = None


LAYOUT = "tensor-bytes"  # field metadata ``layout``: what readers check before decoding


def tensor_type() -> pa.DataType:
    import pyarrow as pa

    return pa.struct([pa.field("shape", pa.list_(pa.int32())), pa.field("data", pa.binary())])


def tensor_column(arrays: Sequence[np.ndarray | None], dtype: np.dtype) -> pa.Array:
    """(bands, H, W) arrays (None = null) -> one ``struct<shape, data>`` Arrow array."""
    import numpy as np
    import pyarrow as pa

    little = np.dtype(dtype).newbyteorder("<")
    shapes = [None if a is None else list(a.shape) for a in arrays]
    data = [None if a is None else np.ascontiguousarray(a, dtype=little).tobytes() for a in arrays]
    mask = pa.array([a is None for a in arrays], pa.bool_())
    return pa.StructArray.from_arrays(
        [pa.array(shapes, pa.list_(pa.int32())), pa.array(data, pa.binary())],
        fields=list(tensor_type()),
        mask=mask,
    )


class ParquetExporter(Exporter):
    name = "parquet"
    summary = (
        "Parquet shards, one row per tile, one raw-tensor column per layer (pyarrow, datasets)"
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
            meta = {
                "bands": json.dumps(info["bands"]),
                "dtype": info["dtype"],
                "role": lay.role,
                "axes": "bands,y,x",
                "layout": LAYOUT,
                "byte_order": "little",
            }
            fields.append(pa.field(lay.name, tensor_type(), metadata=meta))
        return pa.schema(fields, metadata={"m3leo.export": json.dumps({"format": self.name})})

    def process(self, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]] | Failure:
        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        meta = decoded.meta()
        arrays = {name: arr.data for name, arr in decoded.layers.items()}
        return meta, self._table(self.schema(), [(meta, arrays)])  # built in the worker thread

    @staticmethod
    def _id_columns(schema: pa.Schema, rows: list[tuple[dict[str, Any], Any]]) -> list[Any]:
        """The columns every Parquet layout shares: ids, split, region, CRS, bbox, missing."""
        import pyarrow as pa

        return [
            pa.array([m["tile_id"] for m, _ in rows], pa.string()),
            pa.array([m["split"] for m, _ in rows], pa.string()),
            pa.array([m["region"] for m, _ in rows], pa.string()),
            pa.array([m["crs"] for m, _ in rows], pa.string()),
            pa.array([m["bounds"] for m, _ in rows], schema.field("bounds").type),
            pa.array([m["missing"] for m, _ in rows], pa.list_(pa.string())),
        ]

    def _table(self, schema: pa.Schema, rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> Any:
        import numpy as np
        import pyarrow as pa

        cols: list[pa.Array] = self._id_columns(schema, rows)
        for lay in self.layers:
            dtype = np.dtype(self.layer_info[lay.name]["dtype"])
            cols.append(tensor_column([a.get(lay.name) for _, a in rows], dtype))
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
