"""``npz``: one ``<split>/<tile>.npz`` per sample, one array per layer, band names inside.

Keys: ``<layer>`` (bands, H, W) in the stored dtype, ``<layer>.bands`` (band names) and
``__sample__`` (a JSON string: tile id, split, region, CRS, bounds, missing layers). Read with
``numpy.load(path)`` (no pickle needed). The zip is written with fixed member times, so the
same input gives the same bytes.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Exporter, Failure, Unit, UnitResult
from .decode import Decoded, decode_sample
from .outputs import discard, part_info, part_path, promote, writing
from .samples import Sample

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def npy_bytes(array: Any) -> bytearray:
    """An array as ``.npy`` bytes (format 1.0: a stable header), with a single copy of the data."""
    import numpy as np

    array = np.asarray(array)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)  # (never for 0-d arrays: it would make them 1-d)
    head = io.BytesIO()
    fmt = np.lib.format
    fmt.write_array_header_1_0(head, fmt.header_data_from_array_1_0(array))
    h = head.getvalue()
    buf = bytearray(len(h) + array.nbytes)
    buf[: len(h)] = h
    if array.nbytes:
        np.frombuffer(buf, np.uint8, offset=len(h))[:] = array.reshape(-1).view(np.uint8)
    return buf


def sample_json(decoded: Decoded) -> dict[str, Any]:
    meta = decoded.meta()
    for name, arr in decoded.layers.items():
        meta["layers"][name]["bands"] = list(arr.band_names)
    return meta


def write_npz(path: Path, members: dict[str, bytearray]) -> None:
    with writing(path) as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)


class NpzExporter(Exporter):
    name = "npz"
    summary = "one <tile>.npz per sample, one array per layer (numpy.load)"

    def path_of(self, sample: Sample) -> Path:
        return self.out / sample.split / f"{sample.tile_id}.npz"

    def process(self, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]] | Failure:
        import numpy as np

        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        members: dict[str, bytearray] = {}
        for name, arr in decoded.layers.items():
            members[name] = npy_bytes(arr.data)
            members[name + ".bands"] = npy_bytes(np.array(arr.band_names, dtype=str))
        meta = json.dumps(sample_json(decoded), sort_keys=True)
        members["__sample__"] = npy_bytes(np.array(meta))
        path = self.path_of(sample)
        write_npz(path, members)  # heavy I/O and hashing stay in the worker thread
        return decoded.meta(), part_info(path)

    def write(self, unit: Unit, items: Iterator[Any]) -> UnitResult:
        res = UnitResult(unit.key)
        for sample, item in zip(unit.samples, items, strict=True):
            path = self.path_of(sample)
            if isinstance(item, Failure):
                discard(part_path(path))
                res.failures.append(item)
                continue
            meta, info = item
            promote(path)
            res.files[path.relative_to(self.out).as_posix()] = info
            res.samples.append(meta)
        return res
