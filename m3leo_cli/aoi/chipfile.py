"""Writing one chip GeoTIFF into a local region, without ever writing through a planted link.

``chip_folder`` refuses a destination folder that resolves outside the region (a symlinked
datakind folder, or one of its parents); ``write_chip`` writes to a fresh temp file that
``tempfile.mkstemp`` creates in the destination folder (``O_EXCL``: never an existing file or
link), reads it back, then ``os.replace``s it onto the final name, which replaces a link there
instead of writing through it. ``gee`` and ``ingest`` both write this way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import AoiError, UnsafePathError
from .grid import Chip


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def chip_folder(region_root: Path, folder: Path) -> Path:
    """``folder`` (under ``region_root``) created, refused when it resolves outside the region."""
    root = region_root.resolve()
    hint = (
        f"remove the link in {region_root} (a datakind folder must be a real folder inside "
        "the region), then re-run"
    )
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_symlink() or not _inside(probe.resolve(), root):
        if not _inside(folder.absolute(), region_root.absolute()):
            raise AoiError(f"{folder} is not inside region folder {region_root}")
        raise UnsafePathError(f"{probe} leads outside the region folder {root}", hint)
    folder.mkdir(parents=True, exist_ok=True)
    if folder.is_symlink() or not _inside(folder.resolve(), root):
        raise UnsafePathError(f"{folder} leads outside the region folder {root}", hint)
    return folder


def chip_transform(chip: Chip, width: int, height: int) -> Any:
    """The chip's pixel grid: its lon/lat rectangle cut into width x height pixels."""
    from affine import Affine

    w, s, e, n = chip.bbox
    return Affine((e - w) / width, 0.0, w, 0.0, (s - n) / height, n)


def finished_chip(path: Path, bands: Sequence[str], dtype: str) -> bool:
    """A chip already written whole as this recipe writes it (a real file, the same bands and
    dtype): a resumed run skips it. A file an older recipe wrote (float32 medians under
    ``s1grd-YYYY``) is fetched again, not kept under the new definition's name."""
    import rasterio
    from rasterio.errors import RasterioError

    if path.is_symlink() or not path.is_file():
        return False
    try:
        with rasterio.open(path) as src:
            return tuple(src.descriptions) == tuple(bands) and set(src.dtypes) == {dtype}
    except RasterioError:
        return False


def write_chip(path: Path, arr: Any, chip: Chip, names: Sequence[str], nodata: Any) -> None:
    """Write one chip GeoTIFF (into a folder ``chip_folder`` checked), read it back, compare,
    then move it onto ``path``."""
    import numpy as np
    import rasterio

    count, h, w = arr.shape
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": str(arr.dtype),
        "crs": "EPSG:4326",
        "transform": chip_transform(chip, w, h),
        "nodata": nodata,
        "compress": "deflate",
    }
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr)
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
        with rasterio.open(tmp) as back:
            ok = tuple(back.descriptions) == tuple(names) and np.array_equal(
                back.read(), arr, equal_nan=arr.dtype.kind == "f"
            )
        if not ok:
            raise AoiError(f"chip {path.name} did not read back as written", "re-run")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
