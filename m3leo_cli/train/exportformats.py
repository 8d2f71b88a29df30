"""Samples of the export formats ``ExportDataset`` reads besides its own tar and Parquet
readers: ``npz``, ``zarr``, ``tfrecord``, ``hf`` and ``litdata``, each through its own library.

A reader takes one shard of a split (a file of the export, ``exportio.ExportFiles``, local or on
an object store; a zarr split is one store) and yields its samples ``first..last-1`` as
``(tile_id, bounds, arrays, bands_of)``: the present layers among ``wanted`` as (bands, H, W)
NumPy arrays and a function giving a layer's band names. Nothing here resamples or decodes:
``ExportDataset`` does that for every format alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .exportio import ExportFiles, row_group_rows

Row = tuple[str, Any, dict[str, Any], Callable[[str], list[str]]]


def rows(
    fmt: str, files: ExportFiles, rel: str, first: int, last: int, wanted: Mapping[str, list[str]]
) -> Iterator[Row]:
    """``wanted``: layer -> the band names the caller uses. Readers that can read part of a
    layer (zarr: a chunk per band) return those bands only, and ``bands_of`` says so; the
    others return whole layers."""
    if fmt == "zarr":
        return _zarr(files, rel, first, last, wanted)
    read = {"npz": _npz, "hf": _hf, "tfrecord": _tfrecord, "litdata": _litdata}[fmt]
    return read(files, rel, first, last, list(wanted))


def _npz(
    files: ExportFiles, rel: str, first: int, last: int, wanted: Sequence[str]
) -> Iterator[Row]:
    import numpy as np

    if first > 0 or last < 1:
        return
    with files.open(rel) as fh, np.load(fh) as z:
        meta = json.loads(str(z["__sample__"]))
        arrays = {d: z[d] for d in wanted if d in z.files}
        bands = {d: [str(b) for b in z[f"{d}.bands"]] for d in arrays}
    yield meta["tile_id"], meta.get("bounds"), arrays, lambda d: bands[d]


def _hf(
    files: ExportFiles, rel: str, first: int, last: int, wanted: Sequence[str]
) -> Iterator[Row]:
    import pyarrow.parquet as pq

    with files.open(rel) as fh:
        yield from _hf_rows(pq.ParquetFile(fh), first, last, wanted)


def _hf_rows(pf: Any, first: int, last: int, wanted: Sequence[str]) -> Iterator[Row]:
    import numpy as np
    import pyarrow as pa

    schema = pf.schema_arrow
    bands = {d: json.loads((schema.field(d).metadata or {})[b"bands"]) for d in wanted}
    features = json.loads((schema.metadata or {})[b"huggingface"])["info"]["features"]
    shapes = {d: tuple(features[d]["shape"]) for d in wanted}  # datasets' Array3D
    columns = ["tile_id", "bounds", *wanted]
    for table, i in row_group_rows(pf, columns, first, last, combine=True):
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


ZARR_BLOCK = 8  # samples read by one zarr call (one chunk each): decoded together, not one by one


def _zarr(
    files: ExportFiles, rel: str, first: int, last: int, wanted: Mapping[str, list[str]]
) -> Iterator[Row]:
    """The per-sample coordinates (tile ids, bboxes, presence) are read whole once; each layer's
    samples in blocks of consecutive slots, only the bands wanted (exports chunk each band of
    a sample apart; older ones, whole samples, are read whole): one zarr call per block and
    layer, not one per sample and array (zarr's per-call cost was half the loader's time)."""
    import zarr

    root: Any = zarr.open_group(files.zarr_store(rel), mode="r")  # a folder or fsspec
    groups: dict[str, Any] = {d: root[d] for d in wanted if d in root}
    arrays = {d: g[d] for d, g in groups.items()}
    bands: dict[str, list[str]] = {}
    picks: dict[str, list[int] | None] = {}
    for d, g in groups.items():
        names = [str(b) for b in g["band"][:]]
        stored = set(names).issuperset(wanted[d])
        if arrays[d].chunks[1] == 1 and wanted[d] and stored:  # a chunk per band: those wanted
            some_bands = sorted({names.index(b) for b in wanted[d]})
            picks[d], bands[d] = some_bands, [names[i] for i in some_bands]
        else:
            picks[d], bands[d] = None, names
    present = {d: g["present"][:] for d, g in groups.items()}
    some: Any = next(iter(groups.values()))
    tiles, bbox = some["tile_id"][:], some["bbox"][:]
    slots = [i for i, t in enumerate(tiles) if t][first:last]
    k = 0
    while k < len(slots):
        run = [slots[k]]  # consecutive slots, at most ZARR_BLOCK
        while len(run) < ZARR_BLOCK and k + len(run) < len(slots):
            if slots[k + len(run)] != run[-1] + 1:
                break
            run.append(slots[k + len(run)])
        lo, hi = run[0], run[-1] + 1
        block = {d: _bands_of(a, lo, hi, picks[d]) for d, a in arrays.items()}
        for i in run:
            got = {d: block[d][i - lo] for d in groups if bool(present[d][i])}
            yield str(tiles[i]), [float(b) for b in bbox[i]], got, lambda d: bands[d]
        k += len(run)


def _bands_of(array: Any, lo: int, hi: int, picks: list[int] | None) -> Any:
    """Samples ``lo..hi-1`` of a zarr array, only the bands ``picks`` (sorted), read as runs
    of consecutive bands (zarr 3.1 reads a list of indices one shard pass per index: 30 times
    slower than the slices)."""
    import numpy as np

    if picks is None:
        return array[lo:hi]
    runs: list[list[int]] = []
    for i in picks:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = [array[lo:hi, r[0] : r[-1] + 1] for r in runs]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _tfrecord(
    files: ExportFiles, rel: str, first: int, last: int, wanted: Sequence[str]
) -> Iterator[Row]:
    """Records through the ``tfrecord`` package's reader, which opens paths: a shard on an
    object store is copied to a temporary file first (one shard at a time)."""
    import tempfile

    import numpy as np
    from tfrecord.reader import tfrecord_loader

    spec = json.loads(files.read_text(rel.rsplit("/", 1)[0] + "/features.json"))
    bands = {d: list(spec["layers"][d]["bands"] or []) for d in wanted}
    with tempfile.TemporaryDirectory(prefix="m3leo-tfrecord-") as tmp:
        for k, r in enumerate(tfrecord_loader(files.local_copy(rel, tmp), None)):
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


def _litdata_starts(files: ExportFiles, split: str) -> dict[str, int]:
    """Chunk file name -> the index of its first item in the split (``index.json``'s order)."""
    index = json.loads(files.read_text(f"{split}/index.json"))
    out, start = {}, 0
    for c in index["chunks"]:
        out[c["filename"]] = start
        start += int(c["chunk_size"])
    return out


_STREAMS: dict[str, Any] = {}  # split location -> its litdata.StreamingDataset (per process)


def _litdata(
    files: ExportFiles, rel: str, first: int, last: int, wanted: Sequence[str]
) -> Iterator[Row]:
    """Items of one chunk through ``litdata.StreamingDataset`` (by index: the chunk's items
    follow those of the chunks before it in ``index.json``). On an object store litdata
    fetches the chunks itself, into its own cache."""
    import litdata

    split, name = rel.rsplit("/", 1)
    where = files.location(split)
    ds = _STREAMS.get(where)
    if ds is None:
        ds = _STREAMS[where] = litdata.StreamingDataset(where)
    start = _litdata_starts(files, split)[name]
    meta = json.loads(files.read_text("metadata.json"))
    layers = {lay["name"]: list(lay.get("bands") or []) for lay in meta["layers"]}
    for i in range(start + first, start + last):
        it = ds[i]
        arrays = {d: it[d] for d in wanted if d in it and it[d].size}
        yield it["tile_id"], [float(b) for b in it["bbox"]], arrays, lambda d: layers[d]
