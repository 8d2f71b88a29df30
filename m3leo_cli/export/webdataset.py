"""``webdataset``: tar shards ``<split>/<split>-%06d.tar`` of ``--shard-size`` samples.

Each sample is ``<tile>.<layer>.npy`` members (bands, H, W) plus ``<tile>.json`` (band names,
CRS, bounds, shapes, missing layers), so ``webdataset.WebDataset(urls).decode()`` yields one
dict per tile with every layer. Members carry fixed mtime/uid/gid/names and come in sorted
order: the same input gives the same bytes.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Exporter, Failure, Unit, UnitResult
from .decode import decode_sample
from .npz import npy_bytes, sample_json
from .outputs import HashingWriter, promote, writing
from .samples import Sample

COPY_BUFFER = 8 << 20  # few large writes (and hash updates) per member


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class WebDatasetExporter(Exporter):
    name = "webdataset"
    summary = "tar shards of <tile>.<layer>.npy + <tile>.json (webdataset.WebDataset)"
    sharded = True

    def path_of(self, unit: Unit) -> Path:
        return self.out / f"{unit.key}.tar"

    def process(self, sample: Sample) -> tuple[dict[str, Any], list[tuple[str, Any]]] | Failure:
        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        members = [
            (f"{sample.tile_id}.{name}.npy", npy_bytes(arr.data))
            for name, arr in decoded.layers.items()
        ]
        meta: Any = json.dumps(sample_json(decoded), sort_keys=True).encode()
        members.append((f"{sample.tile_id}.json", meta))
        return decoded.meta(), members

    def write(self, unit: Unit, items: Iterator[Any]) -> UnitResult:
        res = UnitResult(unit.key)
        path = self.path_of(unit)
        with writing(path) as fh:
            hw = HashingWriter(fh)
            with tarfile.open(  # type: ignore[call-overload]
                fileobj=hw, mode="w", format=tarfile.USTAR_FORMAT, copybufsize=COPY_BUFFER
            ) as tar:
                for item in items:
                    if isinstance(item, Failure):
                        res.failures.append(item)
                        continue
                    meta, members = item
                    for name, data in members:
                        tar.addfile(_member(name, len(data)), io.BytesIO(data))
                    res.samples.append(meta)
            fh.flush()
        promote(path)
        res.files[path.relative_to(self.out).as_posix()] = hw.info()
        return res
