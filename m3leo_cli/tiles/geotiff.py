"""GeoTIFF tiles: band names from the band descriptions, masks from GDAL's mask flags."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import spec
from .model import Tile, corrupt, datakind_nodata, derived_parts, difference_encoded, resolve_bands


def _tif_names_open(src: Any, datakind: str) -> tuple[str, ...]:
    family = spec.parse_datakind(datakind).family
    descs = src.descriptions
    fallback = family.bands if len(family.bands) == src.count else ()
    names = []
    for i, d in enumerate(descs):
        names.append(d or (fallback[i] if fallback else f"band{i + 1}"))
    return tuple(names)


def _open_tif(path: Path) -> Any:
    """rasterio.open without its NotGeoreferencedWarning: a truncated tile loses its transform,
    and the read that follows reports it as corrupt (one Error: line, not a Python warning)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def tif_names(path: Path, datakind: str) -> tuple[str, ...]:
    from rasterio.errors import RasterioError

    try:
        with _open_tif(path) as src:
            return _tif_names_open(src, datakind)
    except (RasterioError, OSError) as exc:
        raise corrupt(path, exc) from None


def read_tif(path: Path, datakind: str, tile_id: str, bands: Sequence[str] | None) -> Tile:
    import numpy as np
    from rasterio.enums import MaskFlags
    from rasterio.errors import RasterioError

    family = spec.parse_datakind(datakind).family.name
    try:
        with _open_tif(path) as src:
            stored = _tif_names_open(src, datakind)
            names = resolve_bands(bands, stored, datakind)
            needed: list[str] = []
            for n in names:
                parts = derived_parts(n) if n not in stored else None
                needed.extend(parts if parts else (n,))
            needed = list(dict.fromkeys(needed))
            indexes = [stored.index(n) + 1 for n in needed]
            raw = src.read(indexes)
            all_flags = src.mask_flag_enums  # a property that queries GDAL: read it once
            masked = any(all_flags[i - 1] != [MaskFlags.all_valid] for i in indexes)
            raw_mask = (src.read_masks(indexes) == 0) if masked else None
            crs = src.crs.to_string() if src.crs else None
            transform = tuple(src.transform)[:6]
            b = src.bounds
            bounds = (b.left, b.bottom, b.right, b.top)
    except (RasterioError, OSError) as exc:
        raise corrupt(path, exc) from None
    if list(names) == needed:  # no derived bands: the read array is the answer, no copy
        nodata = raw_mask
        implied = datakind_nodata(raw, family)
        if implied is not None:
            nodata = implied if nodata is None else (nodata | implied)
        return Tile(tile_id, datakind, path, raw, tuple(names), nodata, crs, transform, bounds)
    pos = {n: i for i, n in enumerate(needed)}
    planes, masks = [], []
    for n in names:
        parts = derived_parts(n) if n not in pos else None
        if parts:
            vv, vh = pos[parts[0]], pos[parts[1]]
            planes.append(difference_encoded(raw[vv], raw[vh]))
            if raw_mask is not None:
                masks.append(raw_mask[vv] | raw_mask[vh])
        else:
            planes.append(raw[pos[n]])
            if raw_mask is not None:
                masks.append(raw_mask[pos[n]])
    data = np.stack(planes) if planes else raw[:0]
    nodata = np.stack(masks) if masks else None
    implied = datakind_nodata(data, family)
    if implied is not None:
        nodata = implied if nodata is None else (nodata | implied)
    return Tile(tile_id, datakind, path, data, tuple(names), nodata, crs, transform, bounds)
