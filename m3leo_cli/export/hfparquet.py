"""``hf``: Parquet shards that ``datasets.load_dataset`` reads as arrays, a dataset card and
``croissant.json``: an export folder that ``hf upload`` makes a Hub dataset as it is.

``<split>/<split>-%06d.parquet`` as for ``--format parquet`` (one row per tile, ``--shard-size``
rows a shard), but each layer is a ``datasets`` ``Array3D`` column (its Arrow extension type,
shape ``(bands, H, W)`` and dtype) and the schema metadata carries the ``datasets`` Features,
so::

    ds = datasets.load_dataset("parquet", data_dir=out, split="train")
    ds.with_format("numpy", dtype=None)[0]["s1grd-2020"]   # (bands, H, W) uint16

(``dtype=None`` keeps the stored dtype: datasets' numpy format widens integers to int64 by
default). The folder gets ``README.md`` (a dataset card whose YAML ``configs`` name each split's
files) and ``croissant.json`` (MLCommons Croissant 1.1, built with ``mlcroissant``: one file set
and one record set per split, layers as arrays with their shape). Both are written with the
first shard of the first split.

``Array3D`` is stored as nested lists: in Parquet every value carries repetition levels, and
8/16-bit integers are stored as 32-bit, so these files are larger and slower to read than
``--format parquet``'s raw tensor bytes (docs/export.md); a fixed-size list column would be no
smaller, and datasets turns it into NumPy 20 times slower than its own Array3D. m3leo's own
loader reads ``--format parquet`` fastest; this format is for the Hugging Face ecosystem. Every
tile of a layer must share one grid (the first tile's): tiles on another grid fail with a hint
to ``--resample``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .base import Failure, Unit, UnitResult
from .decode import decode_sample
from .outputs import write_bytes_atomic
from .parquet import ParquetExporter
from .samples import Sample

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

REQUIRES = (("datasets", "hf"), ("mlcroissant", "hf"))
GRIDS = "hf:grids"  # layer_info key (not a layer): layer -> [bands, H, W]; and the split list
SPLITS = "hf:splits"
CARD = "README.md"
CROISSANT = "croissant.json"


def fixed_list_column(arrays: Sequence[np.ndarray | None], dtype: Any, shape: Sequence[int]) -> Any:
    """(bands, H, W) arrays (None = null) -> one nested fixed-size list column, values shared
    with one contiguous buffer."""
    import numpy as np
    import pyarrow as pa

    size = int(np.prod(shape))
    flat = np.zeros(len(arrays) * size, dtype=dtype)
    for i, a in enumerate(arrays):
        if a is not None:
            flat[i * size : (i + 1) * size] = a.reshape(-1)
    col: pa.Array = pa.array(flat)
    for n in reversed(shape[1:]):
        col = pa.FixedSizeListArray.from_arrays(col, n)
    mask = pa.array([a is None for a in arrays], pa.bool_())
    return pa.FixedSizeListArray.from_arrays(col, shape[0], mask=mask)


class HfParquetExporter(ParquetExporter):
    name = "hf"
    summary = "Parquet with datasets Features (arrays), a dataset card and croissant.json"
    requires = REQUIRES

    def units(self, split: str, samples: Sequence[Sample], start: int) -> list[Unit]:
        """Fix each layer's grid from its first readable tile (the first split holding it), so
        every shard, job and Dask worker writes one schema."""
        grids = self.layer_info.setdefault(GRIDS, {})
        self.layer_info.setdefault(SPLITS, {})[split] = len(samples)
        for lay in self.layers:
            if lay.name in grids or not self.layer_info.get(lay.name, {}).get("dtype"):
                continue
            for s in samples:
                if lay.name not in s.files:
                    continue
                one = Sample(s.tile_id, s.split, s.region, {lay.name: s.files[lay.name]})
                d = decode_sample(one, [lay], self.options, self.stats)
                if not isinstance(d, Failure):
                    grids[lay.name] = list(d.layers[lay.name].data.shape)
                    break
        return super().units(split, samples, start)

    def _layers(self) -> list[tuple[str, Any, list[int]]]:
        import numpy as np

        grids = self.layer_info.get(GRIDS, {})
        return [
            (lay.name, np.dtype(self.layer_info[lay.name]["dtype"]), grids[lay.name])
            for lay in self.layers
            if lay.name in grids
        ]

    def features(self) -> Any:
        from datasets import Array3D, Features, List, Value

        feats: dict[str, Any] = {
            "tile_id": Value("string"),
            "split": Value("string"),
            "region": Value("string"),
            "crs": Value("string"),
            "bounds": List(Value("float64"), length=4),
            "missing": List(Value("string")),
        }
        for name, dtype, (bands, h, w) in self._layers():
            feats[name] = Array3D(shape=(bands, h, w), dtype=str(dtype))
        return Features(feats)

    def _make_schema(self) -> pa.Schema:
        import pyarrow as pa

        base = super()._make_schema()
        features = self.features()
        fields = [f for f in base if f.name not in self.layer_info]
        for name, _, _ in self._layers():
            meta = dict(base.field(name).metadata or {})
            meta[b"layout"] = b"datasets-array3d"
            fields.append(pa.field(name, features[name](), metadata=meta))
        hf = {"info": {"features": features.to_dict()}}
        return pa.schema(
            fields,
            metadata={
                "m3leo.export": json.dumps({"format": self.name}),
                "huggingface": json.dumps(hf),
            },
        )

    def process(self, sample: Sample) -> tuple[dict[str, Any], Any] | Failure:
        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        for name, _, shape in self._layers():
            arr = decoded.layers.get(name)
            if arr is not None and list(arr.data.shape) != shape:
                why = (
                    f"grid {list(arr.data.shape)} differs from the export's {shape} (a datasets "
                    "array feature has one shape): export with --resample N"
                )
                path = str(sample.files[name].path)
                return Failure(sample.tile_id, sample.split, sample.region, name, path, why)
        meta = decoded.meta()
        arrays = {name: arr.data for name, arr in decoded.layers.items()}
        return meta, self._table(self.schema(), [(meta, arrays)])

    def _table(self, schema: pa.Schema, rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> Any:
        import pyarrow as pa

        cols: list[Any] = self._id_columns(schema, rows)
        from datasets.table import cast_array_to_feature

        features = self.features()
        for name, dtype, shape in self._layers():
            column = fixed_list_column([a.get(name) for _, a in rows], dtype, shape)
            cols.append(cast_array_to_feature(column, features[name]))  # datasets' own storage
        return pa.Table.from_arrays(cols, schema=schema)

    def write(self, unit: Unit, items: Iterator[Any]) -> UnitResult:
        res = super().write(unit, items)
        counts: dict[str, int] = self.layer_info.get(SPLITS, {})
        if counts and unit.split == next(iter(counts)) and unit.key.endswith("-000000"):
            from .hfcard import croissant, dataset_card

            roles = {lay.name: lay.role for lay in self.layers}
            layers = [(n, roles[n], str(dt), shape) for n, dt, shape in self._layers()]
            docs = (
                (CARD, dataset_card(layers, counts)),
                (CROISSANT, croissant(layers, list(counts))),
            )
            for rel, text in docs:
                payload = text.encode()
                write_bytes_atomic(self.out / rel, payload)
                res.files[rel] = {
                    "sha256": hashlib.sha256(payload).hexdigest(),
                    "size": len(payload),
                }
        return res
