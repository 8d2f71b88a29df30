"""``npz``: one ``<split>/<tile>.npz`` per sample, one array per layer, band names inside.

Keys: ``<layer>`` (bands, H, W) in the stored dtype, ``<layer>.bands`` (band names) and
``__sample__`` (a JSON string: tile id, split, region, CRS, bounds, missing layers). Read with
``numpy.load(path)`` (no pickle needed). The zip is written with fixed member times, so the
same input gives the same bytes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Exporter, Failure, Unit, UnitResult
from .decode import Decoded, decode_sample
from .outputs import discard, part_info, part_path, promote, writing
from .samples import Sample

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
ZIP64_LIMIT = (1 << 31) - 1


def npy_parts(array: Any) -> tuple[bytes, memoryview]:
    """An array as ``.npy``: its header (format 1.0, stable) and its data, without copying it."""
    import numpy as np

    array = np.asarray(array)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)  # (never for 0-d arrays: it would make them 1-d)
    head = io.BytesIO()
    fmt = np.lib.format
    fmt.write_array_header_1_0(head, fmt.header_data_from_array_1_0(array))
    return head.getvalue(), memoryview(array.reshape(-1).view(np.uint8))


def npy_bytes(array: Any) -> bytes:
    """An array as ``.npy`` bytes (small arrays: band names, JSON)."""
    head, data = npy_parts(array)
    return head + data.tobytes()


def sample_json(decoded: Decoded) -> dict[str, Any]:
    meta = decoded.meta()
    for name, arr in decoded.layers.items():
        meta["layers"][name]["bands"] = list(arr.band_names)
    return meta


def write_npz(path: Path, members: dict[str, tuple[bytes, memoryview]]) -> None:
    """A zip of ``.npy`` members, stored (no compression), with fixed member times."""
    import zipfile

    with writing(path) as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        for name, (head, data) in members.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.file_size = len(head) + data.nbytes
            with zf.open(info, "w", force_zip64=info.file_size > ZIP64_LIMIT) as member:
                member.write(head)
                member.write(data)


class NpzExporter(Exporter):
    name = "npz"
    summary = "one <tile>.npz per sample, one array per layer (numpy.load)"

    def path_of(self, sample: Sample) -> Path:
        return self.out / sample.split / f"{sample.tile_id}.npz"

    def outputs(self, unit: Unit) -> list[Path]:
        return [self.path_of(s) for s in unit.samples]

    def process(self, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]] | Failure:
        import numpy as np

        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        members: dict[str, tuple[bytes, memoryview]] = {}
        for name, arr in decoded.layers.items():
            members[name] = npy_parts(arr.data)
            members[name + ".bands"] = npy_parts(np.array(arr.band_names, dtype=str))
        meta = json.dumps(sample_json(decoded), sort_keys=True)
        members["__sample__"] = npy_parts(np.array(meta))
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
