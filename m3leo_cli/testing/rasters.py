"""GeoTIFF tiles of the synthetic source: one generator per family, one writer.

Learnable by construction: the labels (land cover, built-up surface, and biomass in
``netcdf``) are functions of the same landscape fields the inputs are made from (vegetation,
water, built-up fraction), plus a little per-pixel noise, so a model trained on the synthetic
inputs can learn them. S1 GRD sees vegetation in VV-VH and built-up areas as double-bounce
brightening; Sentinel-2 sees vegetation in colour and built-up areas as grey.

Bands, dtypes and descriptions follow the published files (see docs/format.md): EPSG:4326, a
transform that spans the tile's lon/lat box, DEFLATE, band descriptions set, and a pinned
TIFFTAG_DATETIME so the same config always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import spec
from .fields import Grid, Landscape

TIFF_DATETIME = "2023:08:01 00:00:00"
_SEASON_DB = {"winter": -0.8, "spring": 0.3, "summer": 0.9, "fall": 0.0}
_REGION_ELEVATION = {
    "china": 400.0,
    "conus": 450.0,
    "europe": 250.0,
    "middleeast": 300.0,
    "pakin": 350.0,
    "southamerica": 200.0,
}


def water(land: Landscape, grid: Grid) -> np.ndarray:
    """Where the synthetic world has open water (shared by land cover, tree cover, optical)."""
    return land.field("water", grid) < 0.16


def vegetation(land: Landscape, grid: Grid) -> np.ndarray:
    return land.field("vegetation", grid)


def built_up(land: Landscape, grid: Grid) -> np.ndarray:
    """Built-up fraction in [0, 1] (0 outside towns): drives GHS-BUILT-S and the inputs."""
    return np.clip((land.field("urban", grid) - 0.6) / 0.4, 0.0, 1.0)


def label_noise(land: Landscape, grid: Grid, name: str, scale: float) -> np.ndarray:
    """Per-pixel noise of one label, fixed by (seed, region, name, tile footprint)."""
    return land.noise(grid, "label", name, grid.bbox, scale=scale)


def s1grd(land: Landscape, grid: Grid, year: int, dtype: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """16 seasonal VV/VH asc/des backscatter bands in dB; uint16 holds the wrapped signed dB."""
    rough = land.field("roughness", grid)
    veg = vegetation(land, grid)
    wet = water(land, grid)
    base_vv = -14.0 + 9.0 * (rough - 0.5) + 3.0 * (veg - 0.5)
    base_vv = np.where(wet, -22.0 + 2.0 * rough, base_vv) + 6.0 * built_up(land, grid)
    bands = []
    for name in spec.S1GRD_BANDS:
        season, rest = name.split("_")
        pol, orbit = rest[:2], rest[2:]
        db = base_vv + _SEASON_DB[season] + (0.4 if orbit == "asc" else -0.4) + 0.2 * (year - 2020)
        if pol == "vh":
            db = db - 6.5 - 2.0 * veg
        bands.append(db)
    arr = np.clip(np.stack(bands), -35.0, 5.0)
    if dtype == "float32":
        return arr.astype(np.float32), spec.S1GRD_BANDS
    # geetiles cast GEE's float dB straight to uint16: negatives wrap (-15 -> 65521)
    return np.rint(arr).astype(np.int16).view(np.uint16), spec.S1GRD_BANDS


def s2rgbm(land: Landscape, grid: Grid, year: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """36 monthly RGB composites, uint8; cloud-masked pixels are 0 as in the published files."""
    veg = vegetation(land, grid)
    soil = land.field("soil", grid)
    wet = water(land, grid)
    bands = []
    for month in range(1, 13):
        green_up = 0.5 + 0.5 * np.sin((month - 4) / 12 * 2 * np.pi)
        v = np.clip(veg * (0.6 + 0.4 * green_up), 0, 1)
        r = 150 - 110 * v + 30 * (soil - 0.5)
        g = 130 - 50 * v + 20 * (soil - 0.5)
        b = 110 - 70 * v + 10 * (soil - 0.5)
        built = built_up(land, grid)
        r, g, b = (x + built * (150.0 - x) for x in (r, g, b))  # towns are grey
        r, g, b = (np.where(wet, c, x) for c, x in ((20.0, r), (45.0, g), (80.0, b)))
        clouds = land.field(f"clouds-{year}-{month}", grid) > 0.9
        for c in (r, g, b):
            bands.append(np.where(clouds, 0, np.clip(np.rint(c), 1, 255)))
    return np.stack(bands).astype(np.uint8), spec.S2RGBM_BANDS


def s2srm(
    land: Landscape, grid: Grid, year: int, names: Sequence[str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Surface reflectance scaled to uint8; the real band list is unknown, so it is a setting."""
    veg = vegetation(land, grid)
    soil = land.field("soil", grid)
    wet = water(land, grid)
    visible = np.where(wet, 12.0, 60 - 30 * veg)
    nir = np.where(wet, 6.0, 30 + 60 * veg)
    swir = np.where(wet, 12.0, 90 - 40 * veg + 20 * soil)
    out = np.empty((len(names), grid.height, grid.width), dtype=np.uint8)
    for i, name in enumerate(names):
        if any(t in name for t in ("B8", "B7", "B6")):
            base = nir
        elif "B11" in name or "B12" in name:
            base = swir
        else:
            base = visible
        out[i] = np.clip(np.rint(base + 3 * np.sin(i + year)), 1, 255)
    return out, tuple(names)


def esaworldcover(land: Landscape, grid: Grid) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class codes 10..100 (uint8) from the landscape; 0 (no data) in a few patches."""
    veg = vegetation(land, grid) + label_noise(land, grid, "esaworldcover", 0.01)
    urban = land.field("urban", grid)
    code = np.select(
        [veg > 0.66, veg > 0.52, veg > 0.38, veg > 0.3, veg > 0.22],
        [10, 30, 40, 20, 90],
        default=60,
    )
    code = np.where(urban > 0.86, 50, code)
    code = np.where(water(land, grid), 80, code)
    code = np.where(land.field("nodata", grid) > 0.965, 0, code)
    return code.astype(np.uint8)[None], spec.ESAWC_BANDS


def modis(land: Landscape, grid: Grid) -> tuple[np.ndarray, tuple[str, ...]]:
    """Percent tree cover 2016-2020 (uint8 0-100) with 200 over water."""
    veg = vegetation(land, grid)
    bands = []
    for i, _ in enumerate(spec.MODIS_BANDS):
        cover = np.clip(np.rint(130 * (veg - 0.3) + i), 0, 100)
        bands.append(np.where(water(land, grid), spec.MODIS_WATER, cover))
    return np.stack(bands).astype(np.uint8), spec.MODIS_BANDS


def srtmdem(land: Landscape, grid: Grid) -> tuple[np.ndarray, tuple[str, ...]]:
    """Elevation (m) and slope (degrees), uint16."""
    relief = land.field("relief", grid)
    elev = _REGION_ELEVATION.get(land.region, 300.0) + 900.0 * relief**2
    elev = np.where(
        water(land, grid), np.minimum(elev, _REGION_ELEVATION.get(land.region, 300.0)), elev
    )
    dx, dy = grid.pixel_metres
    gy, gx = np.gradient(elev, dy, dx)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    return np.stack([np.rint(elev), np.rint(slope)]).astype(np.uint16), spec.SRTM_BANDS


def ghsbuilts(land: Landscape, grid: Grid) -> tuple[np.ndarray, tuple[str, ...]]:
    """Built-up surface (m^2 per ~100 m cell, uint16) on the small native grid."""
    frac = np.clip(built_up(land, grid) + label_noise(land, grid, "ghsbuilts", 0.02), 0, 1)
    built = frac**1.5 * 9000
    return np.rint(built).astype(np.uint16)[None], spec.GHSBUILTS_BANDS


def geotiff_bytes(data: np.ndarray, descriptions: Sequence[str], grid: Grid) -> bytes:
    """Encode a (bands, H, W) array as a DEFLATE GeoTIFF in EPSG:4326 with band descriptions."""
    from rasterio.io import MemoryFile
    from rasterio.transform import Affine

    count, height, width = data.shape
    x0, dx, _, y0, _, dy = grid.transform
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype=data.dtype.name,
            crs="EPSG:4326",
            transform=Affine(dx, 0.0, x0, 0.0, dy, y0),
            compress="deflate",
        ) as dst:
            dst.update_tags(TIFFTAG_DATETIME=TIFF_DATETIME)
            for i, name in enumerate(descriptions, start=1):
                dst.set_band_description(i, name)
            dst.write(data)
        return bytes(mem.read())
