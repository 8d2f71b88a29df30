"""``m3leo ingest``: your own rasters (GeoTIFF/COG, whole or in pieces) cut onto a local
region's chips as a new datakind.

Every chip becomes ``<partition>/<datakind>/<id>.tif``: ``chip_px`` x ``chip_px`` pixels on the
chip's own lon/lat rectangle (EPSG:4326, as M3LEO's chips are), warped from each overlapping
raster with the resampling the user names. Only a window around the chip is read from each
raster, so memory stays flat whatever the raster's size. Nodata stays nodata (pixels no raster
covers are nodata too); chips no raster touches are not written. Band names come from
``bands`` or the rasters' band descriptions. Each written chip is read back and checked, and
the local manifest is rebuilt so ``verify`` can catch later changes.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import spec
from ..errors import IngestError, UsageError
from ..progress import ProgressCallback, ProgressEvent, no_progress
from .chipfile import chip_folder, chip_transform, write_chip
from .grid import Chip
from .local import load_chips, load_region, region_dir, save_region

RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode")
LABEL_RESAMPLING = ("nearest", "mode")  # the ones that never invent a class code
GDAL_CACHE_MB = 64  # the raster block cache during ingest: memory stays flat
DATAKIND_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class _Source:
    path: Path
    bounds4326: tuple[float, float, float, float]


def check_datakind_name(name: str) -> str:
    if not DATAKIND_RE.match(name):
        raise IngestError(
            f"bad datakind name {name!r}",
            "use 1-40 lower-case letters, digits or '-', starting with a letter, e.g. ndvi-2021",
        )
    if spec.is_published_name(name):
        raise IngestError(
            f"datakind {name!r} clashes with a published M3LEO datakind, family or alias",
            "pick a name of your own (e.g. my-" + name + ") with --datakind",
        )
    return name


def _open_sources(rasters: Sequence[Path]) -> tuple[list[_Source], dict[str, Any]]:
    """Check every raster (CRS, bands, dtype agree) and return their lon/lat bounds."""
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.warp import transform_bounds

    if not rasters:
        raise IngestError("no raster given", "pass one or more GeoTIFF/COG files")
    sources, first = [], None
    for path in rasters:
        try:
            src = rasterio.open(path)
        except RasterioIOError as exc:
            raise IngestError(f"cannot read raster {path}: {exc}", "give GeoTIFF/COGs") from None
        with src:
            if src.crs is None or not src.crs.to_wkt():
                raise IngestError(
                    f"raster {path} has no CRS definition",
                    "assign its CRS first, e.g. `gdal_edit.py -a_srs EPSG:32631 FILE`",
                )
            try:
                b = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
            except Exception as exc:  # noqa: BLE001 - GDAL's CPLE_* errors are not public types
                why = str(exc).split(" from '")[0][:120]
                raise IngestError(
                    f"raster {path} has a CRS without a definition m3leo can convert to lon/lat "
                    f"({why})",
                    "reproject it to a CRS with an EPSG definition first (gdalwarp -t_srs)",
                ) from None
            if not all(math.isfinite(v) for v in b):
                raise IngestError(
                    f"raster {path}: its CRS gives no lon/lat extent",
                    "reproject it to a CRS with an EPSG definition first (gdalwarp -t_srs)",
                )
            info = {
                "count": src.count,
                "dtype": src.dtypes[0],
                "nodata": src.nodata,
                "descriptions": tuple(src.descriptions),
            }
        if first is None:
            first = info
        elif (info["count"], info["dtype"]) != (first["count"], first["dtype"]):
            raise IngestError(
                f"raster {path} has {info['count']} {info['dtype']} bands, "
                f"{rasters[0]} has {first['count']} {first['dtype']}",
                "ingest rasters of one layer together; other layers as another --datakind",
            )
        sources.append(_Source(Path(path), tuple(b)))  # type: ignore[arg-type]
    assert first is not None
    return sources, first


def _shifted(t: Any, col: int, row: int) -> Any:
    """The transform of a window starting at (col, row) (rasterio's own warns on new affine)."""
    from affine import Affine

    return Affine(t.a, t.b, t.c + col * t.a + row * t.b, t.d, t.e, t.f + col * t.d + row * t.e)


def _overlaps(chip: Chip, b: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = chip.bbox
    return x0 < b[2] and x1 > b[0] and y0 < b[3] and y1 > b[1]


def _warp_chip(
    chip: Chip,
    datasets: list[Any],
    sources: list[_Source],
    px: int,
    nodata: Any,
    dtype: str,
    resampling: Any,
) -> Any:
    """One chip's array, warped from the window of each overlapping raster."""
    import numpy as np
    from rasterio.warp import reproject, transform_bounds
    from rasterio.windows import Window
    from rasterio.windows import from_bounds as window_from

    count = datasets[0].count
    out = np.full((count, px, px), nodata, dtype=dtype)
    dst_transform = chip_transform(chip, px, px)
    touched = False
    for src, s in zip(datasets, sources, strict=True):
        if not _overlaps(chip, s.bounds4326):
            continue
        left, bottom, right, top = transform_bounds(
            "EPSG:4326", src.crs, *chip.bbox, densify_pts=21
        )
        win = window_from(left, bottom, right, top, transform=src.transform)
        pad = 3  # resampling kernels reach a few source pixels past the chip's edge
        c0 = max(0, math.floor(win.col_off) - pad)
        r0 = max(0, math.floor(win.row_off) - pad)
        c1 = min(src.width, math.ceil(win.col_off + win.width) + pad)
        r1 = min(src.height, math.ceil(win.row_off + win.height) + pad)
        if c1 <= c0 or r1 <= r0:
            continue
        window = Window(c0, r0, c1 - c0, r1 - r0)
        arr = src.read(window=window)
        reproject(
            source=arr,
            destination=out,
            src_transform=_shifted(src.transform, c0, r0),
            src_crs=src.crs,
            src_nodata=src.nodata if src.nodata is not None else nodata,
            dst_transform=dst_transform,
            dst_crs="EPSG:4326",
            dst_nodata=nodata,
            init_dest_nodata=False,
            resampling=resampling,
        )
        touched = True
    if not touched:
        return None
    return out


def _all_nodata(arr: Any, nodata: Any) -> bool:
    import numpy as np

    if isinstance(nodata, float) and math.isnan(nodata):
        return bool(np.isnan(arr).all())
    return bool((arr == nodata).all())


def ingest(
    data_dir: Path,
    region: str,
    datakind: str,
    rasters: Sequence[Path],
    *,
    bands: Sequence[str] = (),
    resampling: str = "nearest",
    chip_px: int | None = None,
    nodata: float | None = None,
    label: bool = False,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Cut ``rasters`` onto the chips of local ``region`` as ``datakind``; returns a summary."""
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling

    if resampling not in RESAMPLING:
        raise UsageError(
            f"unknown resampling {resampling!r}", "use --resampling " + ", ".join(RESAMPLING)
        )
    if label and resampling not in LABEL_RESAMPLING:
        raise UsageError(
            f"--resampling {resampling} would invent class codes in a --label layer "
            "(it averages neighbouring codes)",
            "use --resampling nearest (or mode) for class labels",
        )
    if chip_px is not None and chip_px < 1:
        raise UsageError(f"--chip-px must be at least 1, not {chip_px}", "e.g. --chip-px 448")
    check_datakind_name(datakind)
    reg = load_region(data_dir, region)
    px = chip_px or max(1, round(reg.chip_m / 10))
    sources, info = _open_sources(rasters)
    names = tuple(bands) or info["descriptions"]
    if bands and len(bands) != info["count"]:
        raise IngestError(
            f"{len(bands)} band names for {info['count']} bands",
            f"give --band once per band ({info['count']} times)",
        )
    if not bands and not all(names):
        raise IngestError(
            f"{rasters[0]} has bands without a description: their names are unknown",
            f"name them with --band, once per band ({info['count']} times)",
        )
    if len(set(names)) != len(names):
        raise IngestError(f"band names repeat: {', '.join(names)}", "give distinct --band names")
    dtype = info["dtype"]
    fill = nodata if nodata is not None else info["nodata"]
    if fill is None:
        if np.dtype(dtype).kind != "f":
            raise IngestError(
                f"the rasters ({dtype}) declare no nodata value",
                "give --nodata V: the value for pixels no raster covers",
            )
        fill = float("nan")
    chips = load_chips(data_dir, reg)
    todo = [c for c in chips if any(_overlaps(c, s.bounds4326) for s in sources)]
    if not todo:
        ext = ", ".join(f"{v:.4f}" for v in sources[0].bounds4326)
        raise IngestError(
            f"the rasters do not overlap region {region!r}'s chips (first raster spans {ext})",
            f"check the rasters' CRS and extent against the region (`m3leo map --edition "
            f"local --region {region}`)",
        )
    folder = chip_folder(
        region_dir(data_dir, region), region_dir(data_dir, region) / reg.partition / datakind
    )
    method = Resampling[resampling]
    written = skipped = 0
    progress(ProgressEvent("start", phase="ingest", total_files=len(todo)))
    with contextlib.ExitStack() as stack:
        # GDAL's block cache would otherwise keep growing with the raster (5% of RAM)
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB))
        datasets = [stack.enter_context(rasterio.open(s.path)) for s in sources]
        for chip in todo:
            arr = _warp_chip(chip, datasets, sources, px, fill, dtype, method)
            if arr is None or _all_nodata(arr, fill):
                skipped += 1
            else:
                write_chip(folder / f"{chip.tile_id}.tif", arr, chip, names, fill)
                written += 1
            progress(ProgressEvent("advance", phase="ingest", files=1))
    progress(ProgressEvent("done", phase="ingest"))
    if written == 0:
        raise IngestError(
            f"every chip the rasters touch is nodata in region {region!r}",
            "check --nodata and the rasters' values",
        )
    reg.datakinds[datakind] = {
        "bands": list(names),
        "dtype": dtype,
        "nodata": None if isinstance(fill, float) and math.isnan(fill) else fill,
        "resampling": resampling,
        "chip_px": px,
        "resolution_m": reg.chip_m / px,
        "label": label,
        "sources": [str(Path(r).resolve()) for r in rasters],
        "description": f"ingested from {len(rasters)} raster(s), {resampling} resampling",
    }
    save_region(data_dir, reg)
    from ..config import register_local
    from .manifest import build_local_manifest

    register_local(data_dir)
    summary = build_local_manifest(data_dir, reg, progress)
    return {
        "region": region,
        "datakind": datakind,
        "folder": str(folder),
        "chips_written": written,
        "chips_without_data": skipped,
        "chips_in_region": len(chips),
        "bands": list(names),
        "dtype": dtype,
        "chip_px": px,
        "resampling": resampling,
        "manifest_tiles": summary["datakinds"].get(datakind, {}).get("tiles", 0),
    }
