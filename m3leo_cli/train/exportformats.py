"""Samples of the export formats ``ExportDataset`` reads besides its own tar and Parquet
readers: ``npz``, ``zarr``, ``tfrecord`` and ``hf``, each through its own library.

Each format is a list of *shards* per split (files in name order; a zarr split is one store)
with a sample count, and a reader of samples ``first..last-1`` of one shard as
``(tile_id, bounds, arrays, bands_of)``: the present layers among ``wanted`` as (bands, H, W)
NumPy arrays and a function giving a layer's band names. Nothing here resamples or decodes:
``ExportDataset`` does that for every format alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

Row = tuple[str, Any, dict[str, Any], Callable[[str], list[str]]]

SHARDS = {"npz": "*.npz", "tfrecord": "*.tfrecord", "hf": "*.parquet", "zarr": None}


def shards(fmt: str, root: Path, split: str) -> list[Path]:
    """The shards of one split, in the order the export wrote its samples."""
    folder = root / split
    pattern = SHARDS[fmt]
    if pattern is None:  # zarr: the split folder is the store
        return [folder] if (folder / "zarr.json").is_file() else []
    return sorted(folder.glob(pattern))


def count(fmt: str, path: Path) -> int:
    if fmt == "npz":
        return 1
    if fmt == "hf":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if fmt == "zarr":
        return len(_zarr_slots(path))
    from tfrecord.reader import tfrecord_iterator  # one pass over the file: records are framed

    return sum(1 for _ in tfrecord_iterator(str(path)))


def rows(fmt: str, path: Path, first: int, last: int, wanted: Sequence[str]) -> Iterator[Row]:
    read = {"npz": _npz, "hf": _hf, "zarr": _zarr, "tfrecord": _tfrecord}[fmt]
    return read(path, first, last, wanted)


def _npz(path: Path, first: int, last: int, wanted: Sequence[str]) -> Iterator[Row]:
    import numpy as np

    if first > 0 or last < 1:
        return
    with np.load(path) as z:
        meta = json.loads(str(z["__sample__"]))
        arrays = {d: z[d] for d in wanted if d in z.files}
        bands = {d: [str(b) for b in z[f"{d}.bands"]] for d in arrays}
    yield meta["tile_id"], meta.get("bounds"), arrays, lambda d: bands[d]


def _hf(path: Path, first: int, last: int, wanted: Sequence[str]) -> Iterator[Row]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    bands = {d: json.loads((schema.field(d).metadata or {})[b"bands"]) for d in wanted}
    features = json.loads((schema.metadata or {})[b"huggingface"])["info"]["features"]
    shapes = {d: tuple(features[d]["shape"]) for d in wanted}  # datasets' Array3D
    start = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if start + n <= first:
            start += n
            continue
        if start >= last:
            return
        table = pf.read_row_group(g, columns=["tile_id", "bounds", *wanted]).combine_chunks()
        for i in range(max(first - start, 0), min(last - start, n)):
            arrays = {}
            for d in wanted:
                col = table.column(d).chunk(0)
                if isinstance(col, pa.ExtensionArray):  # datasets imported: its Array3D type
                    col = col.storage
                if col[i].is_valid:
                    flat = col.slice(i, 1).flatten().flatten().flatten()
                    arrays[d] = np.asarray(flat.to_numpy()).reshape(shapes[d])
            tile = table.column("tile_id")[i].as_py()
            yield tile, table.column("bounds")[i].as_py(), arrays, lambda d: bands[d]
        start += n


def _zarr_slots(path: Path) -> tuple[int, ...]:
    """The positions of the store's samples (a failed sample leaves an empty slot)."""
    import zarr

    root: Any = zarr.open_group(path, mode="r")
    first = next(iter(root.group_keys()))
    return tuple(i for i, t in enumerate(root[first]["tile_id"][:]) if t)


def _zarr(path: Path, first: int, last: int, wanted: Sequence[str]) -> Iterator[Row]:
    import zarr

    root: Any = zarr.open_group(path, mode="r")
    groups: dict[str, Any] = {d: root[d] for d in wanted if d in root}
    bands = {d: [str(b) for b in g["band"][:]] for d, g in groups.items()}
    some: Any = next(iter(groups.values()))
    for i in _zarr_slots(path)[first:last]:
        arrays = {d: g[d][i] for d, g in groups.items() if bool(g["present"][i])}
        yield str(some["tile_id"][i]), list(some["bbox"][i]), arrays, lambda d: bands[d]


def _tfrecord(path: Path, first: int, last: int, wanted: Sequence[str]) -> Iterator[Row]:
    import numpy as np
    from tfrecord.reader import tfrecord_loader

    spec = json.loads((path.parent / "features.json").read_text())
    bands = {d: list(spec["layers"][d]["bands"] or []) for d in wanted}
    for k, r in enumerate(tfrecord_loader(str(path), None)):
        if k >= last:
            return
        if k < first:
            continue
        arrays = {}
        for d in wanted:
            if r[f"{d}/present"].item():
                dtype = np.dtype(r[f"{d}/dtype"].decode()).newbyteorder("<")
                shape = tuple(int(n) for n in r[f"{d}/shape"])
                arrays[d] = np.frombuffer(r[f"{d}/data"], dtype).reshape(shape)
        bounds = [float(b) for b in np.frombuffer(r["bbox_f64"], "<f8")]
        yield r["tile_id"].decode(), bounds, arrays, lambda d: bands[d]
