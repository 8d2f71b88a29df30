"""``webdataset``: tar shards ``<split>/<split>-%06d.tar`` of ``--shard-size`` samples.

Each sample is ``<tile>.<layer>.npy`` members (bands, H, W) plus ``<tile>.json`` (band names,
CRS, bounds, shapes, missing layers), so ``webdataset.WebDataset(urls).decode()`` yields one
dict per tile with every layer. Members carry fixed mtime/uid/gid/names and come in sorted
order: the same input gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .base import Exporter, Failure, Unit, UnitResult
from .decode import decode_sample
from .npz import npy_parts, sample_json
from .outputs import HashingWriter, promote, writing
from .samples import Sample

BLOCK = 512  # tarfile.BLOCKSIZE
RECORD = 20 * BLOCK  # tarfile.RECORDSIZE: a tar file is a whole number of records


def _header(name: str, size: int) -> bytes:
    """A ustar header with fixed mtime/uid/gid/owner names (so shards are reproducible)."""
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


class _TarStream:
    """Writes tar members straight from the arrays' memory (``tarfile`` copies each one through
    a file object); the layout is exactly what ``tarfile`` writes: header, data, zero padding to
    512 bytes, and two zero blocks plus padding to a 10240-byte record at the end."""

    def __init__(self, out: HashingWriter) -> None:
        self.out = out

    def add(self, name: str, parts: Sequence[bytes | memoryview]) -> None:
        size = sum(memoryview(p).nbytes for p in parts)
        self.out.write(_header(name, size))
        for p in parts:
            self.out.write(p)
        self.out.write(bytes(-size % BLOCK))

    def close(self) -> None:
        self.out.write(bytes(2 * BLOCK))
        self.out.write(bytes(-self.out.size % RECORD))


class WebDatasetExporter(Exporter):
    name = "webdataset"
    summary = "tar shards of <tile>.<layer>.npy + <tile>.json (webdataset.WebDataset)"
    sharded = True

    def path_of(self, unit: Unit) -> Path:
        return self.out / f"{unit.key}.tar"

    def outputs(self, unit: Unit) -> list[Path]:
        return [self.path_of(unit)]

    def process(self, sample: Sample) -> tuple[dict[str, Any], list[tuple[str, Any]]] | Failure:
        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        members: list[tuple[str, Sequence[bytes | memoryview]]] = [
            (f"{sample.tile_id}.{name}.npy", npy_parts(arr.data))
            for name, arr in decoded.layers.items()
        ]
        meta = json.dumps(sample_json(decoded), sort_keys=True).encode()
        members.append((f"{sample.tile_id}.json", (meta,)))
        return decoded.meta(), members

    def write(self, unit: Unit, items: Iterator[Any]) -> UnitResult:
        res = UnitResult(unit.key)
        path = self.path_of(unit)
        with writing(path) as fh:
            hw = HashingWriter(fh)
            tar = _TarStream(hw)
            for item in items:
                if isinstance(item, Failure):
                    res.failures.append(item)
                    continue
                meta, members = item
                for name, parts in members:
                    tar.add(name, parts)
                res.samples.append(meta)
            tar.close()
            fh.flush()
        promote(path)
        res.files[path.relative_to(self.out).as_posix()] = hw.info()
        return res
