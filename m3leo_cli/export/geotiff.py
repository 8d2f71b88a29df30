"""``geotiff``: the original tile files, byte for byte, as ``<split>/<datakind>/<tile>.<ext>``.

For GIS users and for M3LEO's own loaders (the same folder-per-datakind layout). Files are
copies (a reflink where the filesystem can make one: ``copy_file_range`` shares the blocks
copy-on-write on Btrfs and XFS), so editing an exported file never edits the store. ``--link``
opts into hard links on the store's filesystem (no extra space; editing one edits the other:
the console and metadata.json say so). Every file is checked against the manifest's sha256 on
the way (or fully read when no checksum is known), so a corrupt source is reported, never
exported.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..checksum import file_hexdigest
from ..errors import TileError
from ..store.layout import open_in_folder
from .base import Exporter, Failure, Unit, UnitResult
from .outputs import discard, disk_full, is_disk_full, part_path, promote, sha256_file
from .samples import LayerFile, Sample

DEFAULT_CRS = "EPSG:4326"  # every M3LEO raster (format spec section 3)


def link_or_copy(src: Path, dst: Path, *, link: bool = False) -> str:
    """Copy ``src`` to ``dst`` (or, with ``link``, hard-link it when both are on one
    filesystem); returns "link" or "copy"."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    discard(dst)
    if link:
        try:
            os.link(src, dst)
            return "link"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    try:
        copy_file(src, dst)
    except OSError as exc:
        discard(dst)
        if is_disk_full(exc):
            raise disk_full(dst, exc) from None
        raise
    return "copy"


def copy_file(src: Path, dst: Path) -> None:
    """A byte copy that shares no inode with ``src``: ``copy_file_range`` first (the kernel
    copies, or reflinks where the filesystem can), ``shutil.copyfile`` where it is refused."""
    new = os.O_WRONLY | os.O_CREAT | os.O_TRUNC  # open_in_folder: O_EXCL, never via a link
    with open(src, "rb") as fin, os.fdopen(open_in_folder(dst, new, 0o666), "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), size - done)
                if n == 0:
                    break
                done += n
        except (OSError, AttributeError):  # no such call, another filesystem, an old kernel
            done = -1
    if done != size:
        shutil.copyfile(src, dst)


class GeoTiffExporter(Exporter):
    name = "geotiff"
    summary = "the original .tif/.nc files by split and datakind (copies; --link: hard links)"
    decodes = False

    def path_of(self, sample: Sample, layer: str, lf: LayerFile) -> Path:
        ext = lf.path.name.split(".", 1)[1] if "." in lf.path.name else ""
        return self.out / sample.split / layer / f"{sample.tile_id}.{ext}"

    def outputs(self, unit: Unit) -> list[Path]:
        return [self.path_of(s, name, lf) for s in unit.samples for name, lf in s.files.items()]

    def _check(self, sample: Sample, layer: str, lf: LayerFile, digest: str) -> str | None:
        """Why the source is unusable, or None when it is intact."""
        if lf.checksum and lf.checksum_kind == "sha256":
            if digest != lf.checksum:
                return f"sha256 {digest[:12]}... differs from the manifest's {lf.checksum[:12]}..."
            return None
        if lf.checksum and lf.checksum_kind == "git-sha1":
            ok = file_hexdigest(lf.path, "git-sha1") == lf.checksum
            return None if ok else "git blob sha1 differs"
        from ..tiles.reader import read_tile

        try:
            read_tile(lf.path, layer)
        except TileError as exc:
            return exc.message
        return None

    def process(self, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]] | Failure:
        files: dict[str, Any] = {}
        made: list[Path] = []
        for lay in self.layers:
            lf = sample.files.get(lay.name)
            if lf is None:
                continue
            final = self.path_of(sample, lay.name, lf)
            part = part_path(final)
            try:
                how = link_or_copy(lf.path, part, link=self.options.link)
            except FileNotFoundError:
                return self._fail(sample, lay.name, lf, "the source file is missing", made)
            made.append(part)
            digest = sha256_file(part)
            why = self._check(sample, lay.name, lf, digest)
            if why is not None:
                return self._fail(sample, lay.name, lf, why, made)
            rel = final.relative_to(self.out).as_posix()
            files[rel] = {"sha256": digest, "size": part.stat().st_size}
            if how == "link":
                files[rel]["link"] = True  # the store's own inode: editing it edits the store
        meta = {
            "tile_id": sample.tile_id,
            "split": sample.split,
            "region": sample.region,
            "crs": DEFAULT_CRS,
            "bounds": list(sample.bounds) if sample.bounds else None,
            "layers": {
                lay: {"file": rel}
                for lay, rel in zip(
                    [n.name for n in self.layers if n.name in sample.files], files, strict=True
                )
            },
            "missing": list(sample.missing),
        }
        return meta, files

    def _fail(
        self, sample: Sample, layer: str, lf: LayerFile, why: str, made: list[Path]
    ) -> Failure:
        for p in made:
            discard(p)
        return Failure(sample.tile_id, sample.split, sample.region, layer, str(lf.path), why)

    def write(self, unit: Unit, items: Iterator[Any]) -> UnitResult:
        res = UnitResult(unit.key)
        for item in items:
            if isinstance(item, Failure):
                res.failures.append(item)
                continue
            meta, files = item
            for rel, info in files.items():
                promote(self.out / rel)
                res.files[rel] = info
            res.samples.append(meta)
        return res
