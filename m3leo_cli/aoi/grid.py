"""The M3LEO chip grid over an AOI, built the way geetiles' ``grid`` command builds it.

Chip anchors are stepped every ``chip_m`` metres from the south-west corner of the AOI's
envelope in the UTM zone of its centroid; each anchor, taken back to lon/lat, becomes the
centre of a chip whose sides follow constant longitude and latitude (Earth Engine crops those
without empty border pixels), with half-sides of ``(chip_m - 1) / 2`` metres converted through
the metres per degree measured at that centre. Chips that touch the AOI are kept, in anchor
order (west to east, then south to north within a column). Identifiers, areas and the list
hash in the file name follow geetiles, so a grid made here and one made by geetiles (or the
published regions) agree to the identifier.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import spec
from ..errors import BadAoiError
from .ids import identifier, list_hash, ring_of, shoelace, utm_zone

DEFAULT_CHIP_METRES = 4480.0
MAX_CHIPS = 5_000_000  # the largest published region has 285,402
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class Chip:
    """One chip: id, lon/lat envelope, area (km^2, as geetiles measures it) and its ring."""

    tile_id: str
    bbox: tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max
    area_km2: float

    @property
    def ring(self) -> np.ndarray:
        return ring_of(*self.bbox)

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2)


@dataclass(frozen=True)
class Grid:
    name: str
    chip_m: float
    utm_epsg: int
    chips: tuple[Chip, ...]

    @property
    def partition_hash(self) -> str:
        return list_hash(c.tile_id for c in self.chips)

    @property
    def partition(self) -> str:
        """``<name>_partitions_aschips_<hash>``: the folder and file stem M3LEO uses."""
        return f"{self.name}_partitions_aschips_{self.partition_hash}"

    @property
    def geojson_name(self) -> str:
        return f"{self.partition}.geojson"


def check_name(name: str) -> str:
    """Region names become file names and ``--region`` values: lower-case, no ``_``."""
    if not NAME_RE.match(name):
        raise BadAoiError(
            f"bad region name {name!r}",
            "use 1-40 lower-case letters, digits or '-', starting with a letter (no '_': it "
            "separates M3LEO name parts)",
        )
    if name in spec.REGIONS:
        raise BadAoiError(
            f"{name!r} is a published M3LEO region",
            "give your region another name, e.g. my-" + name,
        )
    return name


def check_chip_size(chip_m: float) -> float:
    if not isinstance(chip_m, int | float) or not np.isfinite(chip_m) or chip_m <= 1:
        raise BadAoiError(
            f"chip size {chip_m!r} is not a positive number of metres (> 1)",
            "give --chip-size in metres, e.g. --chip-size 4480 (M3LEO's size)",
        )
    return float(chip_m)


def _transform(src: int, dst: int, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
    from rasterio.warp import transform

    ox, oy = transform(f"EPSG:{src}", f"EPSG:{dst}", xs.tolist(), ys.tolist())
    return np.asarray(ox, dtype=np.float64), np.asarray(oy, dtype=np.float64)


def build_grid(aoi: Any, chip_m: float = DEFAULT_CHIP_METRES, name: str = "aoi") -> Grid:
    """Chips covering ``aoi`` (a shapely polygon in lon/lat degrees), in geetiles' order."""
    import shapely

    from .shape import check_aoi

    check_name(name)
    m = check_chip_size(chip_m)
    check_aoi(aoi)
    c = aoi.centroid
    epsg = utm_zone(c.x, c.y)
    assert epsg is not None  # check_aoi refused the rest
    lon, lat = shapely.get_coordinates(aoi).T
    ux, uy = _transform(4326, epsg, lon, lat)
    minx, miny, maxx, maxy = ux.min(), uy.min(), ux.max(), uy.max()
    nx, ny = int((maxx - minx) // m), int((maxy - miny) // m)
    if nx * ny > MAX_CHIPS:
        raise BadAoiError(
            f"the AOI would be {nx * ny:,} grid cells of {m:g} m (at most {MAX_CHIPS:,})",
            "grid a smaller AOI or give a larger --chip-size",
        )
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")  # x outer, y inner
    ax = gx.ravel() * m + minx
    ay = gy.ravel() * m + miny
    clon, clat = _transform(epsg, 4326, ax, ay)
    x0, y0 = _transform(4326, epsg, clon, clat)
    x1, _ = _transform(4326, epsg, clon + 0.001, clat)
    _, y2 = _transform(4326, epsg, clon, clat + 0.001)
    dlon = ((m - 1) / 2) / ((x1 - x0) * 1000)
    dlat = ((m - 1) / 2) / ((y2 - y0) * 1000)
    boxes = shapely.box(clon - dlon, clat - dlat, clon + dlon, clat + dlat)
    keep = np.flatnonzero(shapely.intersects(aoi, boxes)) if len(boxes) else np.array([], int)
    if keep.size == 0:
        raise BadAoiError(
            f"no {m:g} m chip fits the AOI (it is smaller than one chip along a side)",
            "give a larger AOI or a smaller --chip-size",
        )
    bb = np.stack(
        [clon[keep] - dlon[keep], clat[keep] - dlat[keep], clon[keep] + dlon[keep]], axis=1
    )
    bb = np.column_stack([bb, clat[keep] + dlat[keep]])
    areas = _areas_km2(bb)
    chips = tuple(
        Chip(
            identifier(ring_of(*row)),
            (float(row[0]), float(row[1]), float(row[2]), float(row[3])),
            float(a),
        )
        for row, a in zip(bb, areas, strict=True)
    )
    return Grid(name=name, chip_m=m, utm_epsg=epsg, chips=chips)


def _areas_km2(bb: np.ndarray) -> np.ndarray:
    """Areas as geetiles stores them: every chip measured in the one UTM zone of the mean of
    the chips' envelope ring (its closing vertex counted twice, as geetiles does)."""
    ring = ring_of(bb[:, 0].min(), bb[:, 1].min(), bb[:, 2].max(), bb[:, 3].max())
    from .ids import envelope_ring

    mlon, mlat = envelope_ring(ring).mean(axis=0)
    epsg = utm_zone(float(mlon), float(mlat))
    assert epsg is not None
    rings = np.stack([ring_of(*row) for row in bb])  # (n, 5, 2)
    px, py = _transform(4326, epsg, rings[:, :, 0].ravel(), rings[:, :, 1].ravel())
    n = len(bb)
    return shoelace(px.reshape(n, 5), py.reshape(n, 5)) / 1e6


def grid_geojson(grid: Grid, splits: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``..._partitions_aschips_<hash>.geojson`` document (properties as published)."""
    feats = []
    for c in grid.chips:
        props: dict[str, Any] = {"area_km2": c.area_km2, "identifier": c.tile_id}
        if splits is not None:
            props["split"] = splits[c.tile_id]
        feats.append(
            {
                "type": "Feature",
                "properties": props,
                "geometry": {"type": "Polygon", "coordinates": [c.ring.tolist()]},
            }
        )
    return {
        "type": "FeatureCollection",
        "name": grid.partition,
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": feats,
    }


def read_grid_geojson(path: Path, name: str, chip_m: float = DEFAULT_CHIP_METRES) -> Grid:
    """A grid back from its GeoJSON (ids are recomputed and must match the file's)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    chips = []
    for f in doc.get("features", []):
        ring = np.asarray(f["geometry"]["coordinates"][0], dtype=np.float64)
        tid = identifier(ring)
        got = f.get("properties", {}).get("identifier")
        if got is not None and got != tid:
            raise BadAoiError(f"{path}: chip {got} does not match its geometry ({tid})")
        lo, hi = ring.min(axis=0), ring.max(axis=0)
        area = float(f.get("properties", {}).get("area_km2", 0.0))
        chips.append(Chip(tid, (lo[0], lo[1], hi[0], hi[1]), area))
    return Grid(name=name, chip_m=chip_m, utm_epsg=0, chips=tuple(chips))


def chips_by_id(chips: Sequence[Chip]) -> dict[str, Chip]:
    return {c.tile_id: c for c in chips}
