"""Tile geometry of the synthetic source: the grid, identifiers, bounding boxes and splits.

The real chips were cut by geetiles: centres on a regular 4480 m grid in one UTM zone (chosen
from the region's centre), each chip an axis-aligned lon/lat rectangle whose half-sizes come from
the local metres-per-degree, identified by a hash of its rounded vertices. This module redoes
that for a small block of cells around the region centre, then samples ``n`` of them (the
miniset is a sample of the full grid; ``original_index`` is the cell's row in the full grid).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .. import spec
from ..aoi.ids import identifier, list_hash, ring_of, shoelace, utm_zone

CHIP_METRES = 4480
# Published area_km2 values are 21.7-22.0 km^2, not the 20.07 km^2 of a 4479 m square, because
# geetiles measured them in one UTM zone per region, far from most chips' central meridian. The
# synthetic chips sit near the centre, so their true area is scaled by this factor to match.
PUBLISHED_AREA_FACTOR = 1.0935
N_STRIPES = 60
STRIPE_CYCLE = ("train", "train", "train", "test", "val")  # 60/20/20


@dataclass(frozen=True)
class TileGeom:
    """One chip: identifier, full-grid row, lon/lat envelope and the geojson ring."""

    tile_id: str
    original_index: int
    bbox: tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max
    ring: tuple[tuple[float, float], ...]  # 5 vertices, format-doc order, closed
    area_km2: float
    centre: tuple[float, float]  # lon, lat


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone holding (lon, lat), as geetiles picks it for a region."""
    epsg = utm_zone(lon, lat)
    if epsg is None:  # pragma: no cover - the six regions are all inside UTM's latitudes
        raise ValueError(f"no UTM zone at {lon}, {lat}")
    return epsg


def region_hash(tile_ids: list[str]) -> str:
    """geetiles' partition hash over identifiers (the published hashes in spec are used instead)."""
    return list_hash(tile_ids)


def _shoelace(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return shoelace(xs, ys)


def build_tiles(region: str, n: int, seed: int) -> list[TileGeom]:
    """``n`` chips of ``region``: cells of a UTM grid around its centre, sampled by ``seed``.

    Returned in full-grid order (ascending ``original_index``).
    """
    from rasterio.warp import transform

    if n < 1:
        raise ValueError("n must be >= 1")
    reg = spec.get_region(region)
    clon, clat = reg.centre
    utm = f"EPSG:{utm_epsg(clon, clat)}"
    (cx,), (cy,) = transform("EPSG:4326", utm, [clon], [clat])
    # The full grid is about 3x the sample, so sampled cells leave gaps like the real miniset.
    side = max(2, math.ceil(math.sqrt(3 * n)))
    gx_n, gy_n = side, side
    rng = np.random.default_rng([seed, _stable(region), 1])
    cells = np.sort(rng.choice(gx_n * gy_n, size=n, replace=False))
    gx, gy = cells // gy_n, cells % gy_n
    m = CHIP_METRES
    ux = cx + (gx - gx_n / 2) * m
    uy = cy + (gy - gy_n / 2) * m
    lons, lats = transform(utm, "EPSG:4326", ux.tolist(), uy.tolist())
    lon0, lat0 = np.asarray(lons), np.asarray(lats)
    # metres per degree, measured in the UTM zone as geetiles does (0.001 degree steps)
    x0, y0 = transform("EPSG:4326", utm, lon0.tolist(), lat0.tolist())
    x1, _ = transform("EPSG:4326", utm, (lon0 + 0.001).tolist(), lat0.tolist())
    _, y2 = transform("EPSG:4326", utm, lon0.tolist(), (lat0 + 0.001).tolist())
    mpd_lon = (np.asarray(x1) - np.asarray(x0)) * 1000
    mpd_lat = (np.asarray(y2) - np.asarray(y0)) * 1000
    dlon = ((m - 1) / 2) / mpd_lon
    dlat = ((m - 1) / 2) / mpd_lat
    rings = [
        ring_of(lo - dx, la - dy, lo + dx, la + dy)
        for lo, la, dx, dy in zip(lon0, lat0, dlon, dlat, strict=True)
    ]
    # area in the UTM zone, corners projected
    flat = np.concatenate(rings)
    px, py = transform("EPSG:4326", utm, flat[:, 0].tolist(), flat[:, 1].tolist())
    areas = _shoelace(np.asarray(px).reshape(n, 5), np.asarray(py).reshape(n, 5)) / 1e6
    tiles = []
    seen: set[str] = set()
    for i in range(n):
        ring = rings[i]
        tid = identifier(ring)
        if tid in seen:  # pragma: no cover - a sha256 collision mod 1e15
            raise RuntimeError(f"duplicate tile id {tid}")
        seen.add(tid)
        tiles.append(
            TileGeom(
                tile_id=tid,
                original_index=int(cells[i]),
                bbox=(float(ring[0, 0]), float(ring[0, 1]), float(ring[2, 0]), float(ring[2, 1])),
                ring=tuple((float(a), float(b)) for a, b in ring),
                area_km2=round(float(areas[i]) * PUBLISHED_AREA_FACTOR, 6),
                centre=(float(lon0[i]), float(lat0[i])),
            )
        )
    return tiles


def assign_splits(tiles: list[TileGeom], angle: float) -> dict[str, str]:
    """Split by parallel stripes along ``angle`` (radians), cycling train x3, test, val.

    Stripes hold equal numbers of chips (at most 60 stripes, fewer for small samples so every
    split gets its share); with three or more chips every split is non-empty.
    """
    n = len(tiles)
    if n == 0:
        return {}
    c, s = math.cos(angle), math.sin(angle)
    proj = [t.centre[0] * c + t.centre[1] * s for t in tiles]
    order = sorted(range(n), key=lambda i: (proj[i], tiles[i].tile_id))
    nbands = min(N_STRIPES, max(len(STRIPE_CYCLE), len(STRIPE_CYCLE) * (n // len(STRIPE_CYCLE))))
    split = {}
    for rank, i in enumerate(order):
        band = rank * nbands // n
        split[tiles[i].tile_id] = STRIPE_CYCLE[band % len(STRIPE_CYCLE)]
    if n >= 3:  # small samples: make sure val and test exist, taking the last train stripes
        for wanted in ("val", "test"):
            if wanted not in split.values():
                for i in reversed(order):
                    tid = tiles[i].tile_id
                    if split[tid] == "train" and list(split.values()).count("train") > 1:
                        split[tid] = wanted
                        break
    return split


def _stable(text: str) -> int:
    """A stable 32-bit integer for a string (Python's hash() changes per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
