"""``litdata``: LitData chunks ``<split>/<split>-%06d.bin`` and ``<split>/index.json``.

``litdata.StreamingDataset("out/train")`` (or ``"s3://bucket/prefix/train"``) streams one item
per sample, a dict:

- ``tile_id``, ``split``, ``region``, ``crs``, ``missing`` (absent layers, comma-separated):
  strings;
- ``bbox``: float64 (4,) W, S, E, N in EPSG:4326 (NaN when unknown);
- one ``(bands, H, W)`` NumPy array per layer, in its dtype (an absent layer with
  ``--allow-missing``: shape (0, 0, 0)).

Chunks are written by litdata's own ``BinaryWriter`` (its item serialisation and chunk layout),
one chunk per unit of ``--shard-size`` samples, uncompressed: litdata fetches a whole chunk
before reading an item from it, so pick ``--shard-size`` for chunks of tens of MB (8 samples
of 448-px S1 are ~50 MB). The chunk's bytes go straight into the ``.part`` file (hashed on
the way), then it is renamed like every export file. A split's ``index.json`` (the chunk list
and the item layout litdata reads) needs every chunk's size, so it is written by
:meth:`LitDataExporter.finish` once every unit of every job is done; its ``updated_at`` (the key
litdata caches a remote dataset under) is a digest of the chunks, not a time, so the same export
gives the same bytes and a changed one is never read from a stale cache. Band names and what was
done to the values are in ``metadata.json``'s layers.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .base import Exporter, Failure, Unit, UnitResult
from .decode import decode_sample
from .outputs import HashingWriter, promote, write_bytes_atomic, writing
from .samples import Sample

REQUIRES = (("litdata", "litdata"),)
INDEX = "index.json"  # litdata's name for a dataset's chunk list
SUFFIX = ".bin"
IDS = ("tile_id", "split", "region", "crs", "missing")


def _writer(folder: str, items: int, sink: Any) -> Any:
    """litdata's BinaryWriter for one chunk of at most ``items`` items (``--shard-size``), its
    file bytes sent to ``sink`` (our ``.part`` file) instead of a file of its own naming."""
    from litdata.streaming.writer import BinaryWriter

    class ChunkWriter(BinaryWriter):  # type: ignore[misc]
        def write_chunk_to_file(self, raw_data: bytes, filename: str, compress: Any = None) -> None:
            sink.write(raw_data)

    return ChunkWriter(folder, chunk_size=max(1, items))


class LitDataExporter(Exporter):
    name = "litdata"
    summary = "LitData chunks + index.json: a dict of arrays and ids per sample (StreamingDataset)"
    sharded = True
    requires = REQUIRES

    def path_of(self, unit: Unit) -> Path:
        return self.out / f"{unit.key}{SUFFIX}"

    def outputs(self, unit: Unit) -> list[Path]:
        return [self.path_of(unit)]

    def _dtype(self, layer: str) -> str:
        return str(self.layer_info.get(layer, {}).get("dtype") or "float32")

    def item(self, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> dict[str, Any]:
        """One sample as the dict litdata stores (the same keys and leaf kinds for every
        sample, so one item layout describes the whole split)."""
        import numpy as np

        bounds = meta.get("bounds") or (np.nan,) * 4
        row: dict[str, Any] = {
            "tile_id": str(meta["tile_id"]),
            "split": str(meta["split"]),
            "region": str(meta["region"]),
            "crs": str(meta.get("crs") or ""),
            "missing": ",".join(meta.get("missing") or ()),
            "bbox": np.asarray([float(b) for b in bounds], dtype=np.float64),
        }
        for lay in self.layers:
            arr = arrays.get(lay.name)
            if arr is None:
                arr = np.zeros((0, 0, 0), dtype=self._dtype(lay.name))
            row[lay.name] = np.ascontiguousarray(arr)
        return row

    def process(self, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]] | Failure:
        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        meta = decoded.meta()
        return meta, self.item(meta, {n: a.data for n, a in decoded.layers.items()})

    def config(self) -> dict[str, Any]:
        """The item layout litdata records in ``index.json`` (from a one-pixel stand-in item
        serialised by litdata itself: it depends on the keys and leaf kinds, not the values)."""
        import numpy as np

        meta: dict[str, Any] = {"tile_id": "0", "split": "", "region": "", "bounds": None}
        arrays = {lay.name: np.zeros((1, 1, 1), self._dtype(lay.name)) for lay in self.layers}
        with tempfile.TemporaryDirectory() as tmp:
            w = _writer(tmp, self.options.shard_size, _Null())
            w.add_item(0, self.item(meta, arrays))
            w.write_chunk(on_done=True)
            config: dict[str, Any] = json.loads(json.dumps(w.get_config()))
        return config

    def write(self, unit: Unit, items: Iterator[Any]) -> UnitResult:
        res = UnitResult(unit.key)
        path = self.path_of(unit)
        with tempfile.TemporaryDirectory() as tmp, writing(path) as fh:
            hw = HashingWriter(fh)
            w = _writer(tmp, self.options.shard_size, hw)
            for item in items:
                if isinstance(item, Failure):
                    res.failures.append(item)
                    continue
                meta, row = item
                w.add_item(len(res.samples), row)  # serialised now: the arrays can go
                res.samples.append(meta)
            if res.samples:
                w.write_chunk(on_done=True)
                got = json.loads(json.dumps(w.get_config()))
                if got != self.config():  # one layout per split, or litdata misreads items
                    raise RuntimeError(f"litdata inferred another item layout for {unit.key}")
            fh.flush()
        if not res.samples:  # every sample failed: no chunk (the unit is redone after repair)
            path.with_name(path.name + ".part").unlink(missing_ok=True)
            return res
        promote(path)
        res.files[path.relative_to(self.out).as_posix()] = hw.info()
        return res

    def finish(self, results: Mapping[str, UnitResult]) -> dict[str, dict[str, Any]]:
        """Each split's ``index.json``: its chunks in order with their bytes and item counts."""
        splits: dict[str, list[dict[str, Any]]] = {}
        digests: dict[str, Any] = {}
        for key, res in results.items():
            split = key.split("/", 1)[0]
            rel = f"{key}{SUFFIX}"
            chunks = splits.setdefault(split, [])
            digests.setdefault(split, hashlib.sha256())
            info = res.files.get(rel)
            if info is None or not res.samples:
                continue
            chunks.append(
                {
                    "chunk_bytes": int(info["size"]),
                    "chunk_size": len(res.samples),
                    "dim": None,
                    "filename": rel.split("/", 1)[1],
                }
            )
            digests[split].update(f"{rel} {info['sha256']}\n".encode())
        config = self.config()
        files: dict[str, dict[str, Any]] = {}
        for split, chunks in splits.items():
            key = digests[split].hexdigest()[:16]
            doc = {"chunks": chunks, "config": config, "updated_at": key}
            payload = json.dumps(doc, sort_keys=True).encode()
            write_bytes_atomic(self.out / split / INDEX, payload)
            files[f"{split}/{INDEX}"] = {
                "sha256": hashlib.sha256(payload).hexdigest(),
                "size": len(payload),
            }
        return files


class _Null:
    """A file that forgets what is written (the stand-in chunk of :meth:`config`)."""

    def write(self, data: Any) -> int:
        return len(data)
