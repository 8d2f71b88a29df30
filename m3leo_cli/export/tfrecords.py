"""``tfrecord``: shards ``<split>/<split>-%06d.tfrecord`` of ``tf.train.Example`` records.

One record per sample, written without TensorFlow by the ``tfrecord`` package (its
``TFRecordWriter`` frames the records, with their masked crc32c, and serialises the Example
messages of TensorFlow's published ``example.proto``). Features:

- ``tile_id``, ``split``, ``region``, ``crs``, ``missing`` (absent layers, comma-separated):
  bytes;
- ``bbox``: 4 floats (W, S, E, N; float32, as ``tf.train.FloatList`` holds them) and
  ``bbox_f64``: the same as 32 raw little-endian float64 bytes, exact;
- per layer ``<layer>/data`` (the (bands, H, W) array's raw little-endian bytes in its dtype),
  ``<layer>/shape`` (3 int64), ``<layer>/dtype`` (numpy's name) and ``<layer>/present``
  (0 when the tile lacks the layer: empty data, shape 0, 0, 0).

Every feature is in every record, so ``tf.io.parse_single_example`` takes fixed-length specs:
``<split>/features.json`` beside the shards lists them (name -> dtype and shape, and per
layer its band names, dtype and role), with the two lines that read it in its ``read_with``.
Records are uncompressed: the arrays are what ``tf.io.decode_raw`` wants, and tf.data reads
them without a codec.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Exporter, Failure, Unit, UnitResult
from .decode import decode_sample
from .outputs import HashingWriter, promote, write_bytes_atomic, writing
from .samples import Sample

REQUIRES = (("tfrecord", "tfrecord"),)
SPEC = "features.json"
READ_WITH = (
    "spec = {k: tf.io.FixedLenFeature(v['shape'], tf.dtypes.as_dtype(v['dtype'])) for k, v in "
    "json.load(open('features.json'))['features'].items()}",
    "ds = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, spec))",
)


def tf_writer(fh: Any) -> Any:
    """The ``tfrecord`` package's writer on an open file (ours: created ``.part``, O_EXCL,
    never through a link) rather than on a path it would open itself."""
    from tfrecord.writer import TFRecordWriter

    writer = TFRecordWriter.__new__(TFRecordWriter)
    writer.file = fh  # all its write() uses; close() is the caller's
    return writer


class TfRecordExporter(Exporter):
    name = "tfrecord"
    summary = "TFRecord shards of tf.train.Example, raw arrays + shape + dtype (tf.data)"
    sharded = True
    requires = REQUIRES

    def path_of(self, unit: Unit) -> Path:
        return self.out / f"{unit.key}.tfrecord"

    def outputs(self, unit: Unit) -> list[Path]:
        return [self.path_of(unit)]

    def feature_spec(self) -> dict[str, Any]:
        """Every feature's dtype and fixed shape (``tf.io.FixedLenFeature``), and the layers."""
        feats: dict[str, Any] = {
            name: {"dtype": "string", "shape": []}
            for name in ("tile_id", "split", "region", "crs", "missing", "bbox_f64")
        }
        feats["bbox"] = {"dtype": "float32", "shape": [4]}
        layers = {}
        for lay in self.layers:
            info = self.layer_info.get(lay.name, {})
            feats[f"{lay.name}/data"] = {"dtype": "string", "shape": []}
            feats[f"{lay.name}/shape"] = {"dtype": "int64", "shape": [3]}
            feats[f"{lay.name}/dtype"] = {"dtype": "string", "shape": []}
            feats[f"{lay.name}/present"] = {"dtype": "int64", "shape": []}
            layers[lay.name] = {
                "role": lay.role,
                "dtype": info.get("dtype"),
                "bands": info.get("bands"),
                "axes": "bands,y,x",
                "byte_order": "little",
            }
        return {
            "m3leo_export": {"format": self.name},
            "features": dict(sorted(feats.items())),
            "layers": layers,
            "read_with": list(READ_WITH),
        }

    def process(self, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]] | Failure:
        import numpy as np

        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        meta = decoded.meta()
        bounds = [float(b) for b in meta["bounds"] or (np.nan,) * 4]
        datum: dict[str, Any] = {
            "tile_id": (sample.tile_id.encode(), "byte"),
            "split": (sample.split.encode(), "byte"),
            "region": (sample.region.encode(), "byte"),
            "crs": ((meta["crs"] or "").encode(), "byte"),
            "missing": (",".join(sample.missing).encode(), "byte"),
            "bbox": (bounds, "float"),
            "bbox_f64": (np.asarray(bounds, "<f8").tobytes(), "byte"),
        }
        for lay in self.layers:
            arr = decoded.layers.get(lay.name)
            dtype = self.layer_info.get(lay.name, {}).get("dtype") or ""
            if arr is None:
                data, shape = b"", [0, 0, 0]
            else:
                little = arr.data.dtype.newbyteorder("<")
                data = np.ascontiguousarray(arr.data, dtype=little).tobytes()
                shape, dtype = list(arr.data.shape), str(arr.data.dtype)
            datum[f"{lay.name}/data"] = (data, "byte")
            datum[f"{lay.name}/shape"] = (shape, "int")
            datum[f"{lay.name}/dtype"] = (dtype.encode(), "byte")
            datum[f"{lay.name}/present"] = (int(arr is not None), "int")
        return meta, datum

    def write(self, unit: Unit, items: Iterator[Any]) -> UnitResult:
        res = UnitResult(unit.key)
        path = self.path_of(unit)
        with writing(path) as fh:
            hw = HashingWriter(fh)
            writer = tf_writer(hw)
            for item in items:
                if isinstance(item, Failure):
                    res.failures.append(item)
                    continue
                meta, datum = item
                writer.write(datum)
                res.samples.append(meta)
            fh.flush()
        promote(path)
        res.files[path.relative_to(self.out).as_posix()] = hw.info()
        if unit.key.endswith("-000000"):  # the split's first shard records the spec beside it
            payload = (json.dumps(self.feature_spec(), indent=1) + "\n").encode()
            spec = self.out / unit.split / SPEC
            write_bytes_atomic(spec, payload)
            rel = spec.relative_to(self.out).as_posix()
            res.files[rel] = {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
        return res
