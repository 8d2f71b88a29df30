"""An iterable dataset over an export (any format but ``geotiff``), exact across workers and ranks.

The export is a folder or an fsspec URL (``s3://bucket/prefix``: files are read where they are,
``exportio``). The samples of a split are the concatenation of its shards (their order: the
export's, or with ``shuffle`` a permutation drawn from (seed, epoch)). Each distributed rank
takes one contiguous block of that sequence and each DataLoader worker one contiguous block of
its rank's, so every sample is read exactly once per epoch with no duplicate and no gap,
whatever the shard sizes; with ``shuffle`` each worker then mixes its block through a bounded
buffer. Shards outside a worker's block are not opened; inside, tar headers and Parquet row
groups are skipped without reading their arrays. ``npz``, ``zarr``, ``tfrecord``, ``hf`` and
``litdata`` exports are read by their own libraries (``exportformats``).

Layers are taken as the export wrote them: when it was normalised (``--normalize``), inputs are
used as they are; the target keeps its stored values (export never normalises labels; for an
export made before that rule, ``metadata.json``'s mean/std turn it back); otherwise they are decoded
(``tiles.model.decode_values``) like the store dataset does without statistics. Resampling
onto ``data.size`` happens here when the export kept native grids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import spec
from ..errors import TrainConfigError
from ..stream.order import block
from . import exportformats
from .assemble import Assembler, LayerData
from .exportio import (
    SUFFIX,
    ExportFiles,
    epoch_order,
    load_metadata,
    row_group_rows,
    shuffled,
    split_shards,
)
from .layers import DataSpec, channel_names, select_bands

SHUFFLE_BUFFER = 64  # samples (each a whole assembled sample: ~10 MB at 448 px, 12 channels)


def dist_position() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when it is initialised, else the env, else 0/1."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _check_layout(files: ExportFiles, rel: str, layers: Sequence[str]) -> None:
    """Refuse the nested-list layer columns of development builds before iterating."""
    import pyarrow.parquet as pq

    from ..export.parquet import LAYOUT

    with files.open(rel) as fh:
        schema = pq.read_schema(fh)
    for d in layers:
        if (schema.field(d).metadata or {}).get(b"layout") != LAYOUT.encode():
            raise TrainConfigError(
                f"{files.location(rel)} stores {d} as nested lists (an m3leo development build's "
                "layout)",
                "export it again: m3leo export --format parquet --overwrite ...",
            )


def _nodata(data: Any, value: Any, datakind: str) -> Any:
    import numpy as np

    from ..tiles.model import datakind_nodata

    mask = np.isnan(data) if np.issubdtype(data.dtype, np.floating) else None
    if value is not None:
        hit = data == value
        mask = hit if mask is None else (mask | hit)
    implied = datakind_nodata(data, spec.parse_datakind(datakind).family.name)
    if implied is not None:
        mask = implied if mask is None else (mask | implied)
    return mask


class ExportDataset(torch.utils.data.IterableDataset):
    """Iterate the samples of one split of an export as the store dataset's sample dicts."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        data: DataSpec,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer: int = SHUFFLE_BUFFER,
    ) -> None:
        super().__init__()
        self.files = ExportFiles(root)
        meta = load_metadata(self.files)
        self.format = meta["format"]
        if self.format not in SUFFIX and self.format != "zarr":
            raise TrainConfigError(
                f"cannot stream a {self.format} export",
                "export with --format webdataset, parquet, npz, zarr, tfrecord, hf or litdata",
            )
        self.layers = {lay["name"]: lay for lay in meta["layers"]}
        names = list(self.layers)
        if data.target is None:
            raise TrainConfigError(
                "an unlabelled experiment (MAE pre-training) reads the store, not an export",
                "leave data.export out",
            )
        target = self._one(data.target.modality, names)
        inputs = [self._one(i.modality, [n for n in names if n != target]) for i in data.inputs]
        self.tokens = {d: data.inputs[i].bands for i, d in enumerate(inputs)}
        if self.format not in ("webdataset", "npz"):  # the others: one band list per layer
            varying = [d for d in inputs if spec.parse_datakind(d).family.name == "gunw"]
            if varying:
                raise TrainConfigError(
                    f"a {self.format} export records one band list per layer, but {varying[0]}'s "
                    "date pairs differ from tile to tile",
                    "stream a webdataset export (it records each tile's bands) or the store",
                )
        self.channels = {
            d: channel_names(d, self.tokens[d], self.layers[d]["bands"]) for d in inputs
        }
        normalized = bool(meta.get("options", {}).get("normalize"))
        # labels are never normalised by export; an export written before that rule may have
        # z-scored them: its per-layer record (or, older still, the run's flag) says so, and
        # the saved mean/std undo it
        layer: dict[str, Any] = next(
            (e for e in meta.get("layers", []) if e.get("name") == target), {}
        )
        label_normalized = bool(layer.get("normalized", normalized))
        saved = (meta.get("normalization") or {}).get(target)
        self.undo = None
        if label_normalized and saved is not None:
            from ..export.normalize import BandStats

            self.undo = BandStats(target, dict(saved.get("bands", {})))
        counts = {d: len(c) for d, c in self.channels.items()}
        self.assembler = Assembler(data, inputs, counts, target, None, normalized)
        self.data = data
        self.split = split
        listed = split_shards(meta, split)
        self.shards = [rel for rel, _ in listed]
        self.counts = [n for _, n in listed]
        if self.format == "parquet" and self.shards:
            _check_layout(self.files, self.shards[0], [*inputs, target])
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed, self.buffer = shuffle, int(seed), max(0, int(shuffle_buffer))
        self.epoch = 0

    @staticmethod
    def _one(token: str, names: Sequence[str]) -> str:
        hits = [n for n in names if spec.matches_modality(token, n)]
        if len(hits) != 1:
            raise TrainConfigError(
                f"the export holds {len(hits)} layers matching {token!r} ({', '.join(hits)})",
                f"its layers are: {', '.join(names)}",
            )
        return hits[0]

    @property
    def channel_names(self) -> list[str]:
        return [c for d in self.assembler.inputs for c in self.channels[d]]

    def _position(self) -> tuple[int, int]:
        rank, world = dist_position()
        return (rank if self.rank is None else self.rank), (
            world if self.world_size is None else self.world_size
        )

    def _rank_block(self) -> tuple[int, int]:
        rank, world = self._position()
        return block(sum(self.counts), world, rank)

    def __len__(self) -> int:
        lo, hi = self._rank_block()
        return hi - lo

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration reads (its shard order and buffer draws); each
        iteration then moves on by one, so a loader whose workers persist, or one without
        workers, reads a new order each epoch without being told."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        lo, hi = self._rank_block()
        info = torch.utils.data.get_worker_info()
        worker = 0
        if info is not None:
            a, b = block(hi - lo, info.num_workers, info.id)
            lo, hi, worker = lo + a, lo + b, info.id
        samples = self._block(epoch, lo, hi)
        if not self.shuffle or self.buffer <= 1:
            yield from samples
            return
        rank, _ = self._position()
        yield from shuffled(samples, self.buffer, (self.seed, epoch, rank, worker))

    def _block(self, epoch: int, lo: int, hi: int) -> Iterator[dict[str, Any]]:
        """Samples ``lo..hi-1`` of the epoch's sequence (its shards in the epoch's order)."""
        start = 0
        for k in epoch_order(len(self.shards), self.seed, epoch, self.shuffle):
            rel, n = self.shards[k], self.counts[k]
            first, last = max(lo - start, 0), min(hi - start, n)
            if first < last:
                read = {"webdataset": self._tar, "parquet": self._parquet}.get(
                    self.format, self._rows
                )
                yield from read(rel, first, last)
            start += n
            if start >= hi:
                break

    # ------------------------------------------------------------------ one sample

    def _layer(self, name: str, data: Any, bands: Sequence[str]) -> LayerData:
        """The selected bands of one exported layer (all bands for the target's band token)."""
        import numpy as np

        wanted = self._wanted(name, bands)
        idx = [bands.index(b) for b in wanted if b is not None]
        arr = data[idx]
        lost = None  # nodata of a normalised label (NaN there, gone once rounded back)
        if name == self.assembler.target and self.undo is not None:
            lost = np.isnan(arr)
            arr = self._denormalize(arr, [b for b in wanted if b is not None])
        mask = _nodata(arr, self.layers[name].get("nodata"), name)
        if lost is not None and lost.any():
            mask = lost if mask is None else (mask | lost)
        return LayerData(arr, wanted, mask)

    def _wanted(self, name: str, bands: Sequence[str]) -> list[str | None]:
        """The bands of layer ``name`` the sample uses (the target's band for the target)."""
        if name == self.assembler.target and self.data.target is not None:
            return list(select_bands([self.data.target.band], bands, name))
        return list(select_bands(self.tokens[name], bands, name))

    def _denormalize(self, arr: Any, bands: Sequence[str]) -> Any:
        """Stored label values back from a normalised export (integer codes rounded back)."""
        import numpy as np

        assert self.undo is not None
        ms = [self.undo.mean_std(b) for b in bands]
        mean = np.array([m for m, _ in ms], dtype=np.float64)[:, None, None]
        std = np.array([sd for _, sd in ms], dtype=np.float64)[:, None, None]
        values = arr.astype(np.float64) * std + mean
        source = np.dtype(self.layers[self.assembler.target].get("source_dtype") or "float32")
        if source.kind in "iu":
            return np.where(np.isnan(values), 0, np.rint(values)).astype(source)
        return values.astype(np.float32)

    def _sample(self, tile_id: str, bounds: Any, arrays: dict[str, Any], bands: Any) -> Any:
        from ..errors import NoLabelsError

        target = self.assembler.target
        if target not in arrays:
            raise NoLabelsError(f"tile {tile_id} of the export has no {target}")
        layers = {
            d: (self._layer(d, arrays[d], bands(d)) if d in arrays else None)
            for d in self.assembler.inputs
        }
        tgt = self._layer(target, arrays[target], bands(target))
        return self.assembler.sample(layers, tgt, tile_id, bounds)

    def _tar(self, rel: str, first: int, last: int) -> Iterator[dict[str, Any]]:
        """Samples ``first..last-1`` of one tar (members of a tile are contiguous)."""
        import io
        import tarfile

        import numpy as np

        def done(tile: str, arrays: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
            lay = meta.get("layers", {})
            return self._sample(tile, meta.get("bounds"), arrays, lambda d: list(lay[d]["bands"]))

        with self.files.open(rel) as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            index, key = -1, None
            arrays: dict[str, Any] = {}
            meta: dict[str, Any] = {}
            for m in tar:
                tile, _, rest = m.name.partition(".")
                if tile != key:
                    if key is not None and first <= index < last:
                        yield done(key, arrays, meta)
                    key, arrays, meta, index = tile, {}, {}, index + 1
                if index >= last:
                    return
                if index < first:
                    continue
                fh = tar.extractfile(m)
                assert fh is not None
                if rest == "json":
                    meta = json.loads(fh.read())
                elif rest.endswith(".npy") and rest[:-4] in self.layers:
                    arrays[rest[:-4]] = np.load(io.BytesIO(fh.read()))
            if key is not None and first <= index < last:
                yield done(key, arrays, meta)

    def _rows(self, rel: str, first: int, last: int) -> Iterator[dict[str, Any]]:
        """Samples ``first..last-1`` of one shard of the other formats (``exportformats``)."""
        assert self.assembler.target is not None  # unlabelled experiments are refused above
        wanted = [*self.assembler.inputs, self.assembler.target]
        needed = {  # the bands each layer's reader may keep to itself (zarr reads only these)
            d: sorted({b for b in self._wanted(d, self.layers[d]["bands"]) if b is not None})
            for d in wanted
        }
        for tile, bounds, arrays, bands in exportformats.rows(
            self.format, self.files, rel, first, last, needed
        ):
            yield self._sample(tile, bounds, arrays, bands)

    def _parquet(self, rel: str, first: int, last: int) -> Iterator[dict[str, Any]]:
        import pyarrow.parquet as pq

        with self.files.open(rel) as raw:
            yield from self._row_groups(pq.ParquetFile(raw), first, last)

    def _row_groups(self, pf: Any, first: int, last: int) -> Iterator[dict[str, Any]]:
        import numpy as np

        assert self.assembler.target is not None  # unlabelled experiments are refused above
        wanted = [*self.assembler.inputs, self.assembler.target]
        meta = {d: pf.schema_arrow.field(d).metadata for d in wanted}
        field_bands = {d: json.loads(m[b"bands"]) for d, m in meta.items()}
        dtypes = {d: np.dtype(m[b"dtype"].decode()).newbyteorder("<") for d, m in meta.items()}
        columns = ["tile_id", "bounds", *wanted]
        for table, i in row_group_rows(pf, columns, first, last):
            arrays = {}
            for d in wanted:
                got = _row_array(table.column(d).chunk(0), i, dtypes[d])
                if got is not None:
                    arrays[d] = got
            tile = table.column("tile_id")[i].as_py()
            bounds = table.column("bounds")[i].as_py()
            yield self._sample(tile, bounds, arrays, lambda d: field_bands[d])


def _row_array(column: Any, i: int, dtype: Any) -> Any:
    """Row ``i`` of a layer column (raw tensor bytes) as a (bands, H, W) array, or None."""
    import numpy as np

    if not column[i].is_valid:
        return None
    shape = column.field("shape")[i].as_py()
    return np.frombuffer(column.field("data")[i].as_buffer(), dtype=dtype).reshape(shape)
