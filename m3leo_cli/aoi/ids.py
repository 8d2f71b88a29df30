"""Chip identifiers, partition hashes and UTM zones, computed the way geetiles computes them.

These strings are how M3LEO names every chip file and partition folder, so they must agree
with the published dataset to the character: sha256 of numpy's text of the rounded envelope,
kept modulo 10**15 as 13 hex digits. Numpy only, so the synthetic source can use them too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import numpy as np

ID_MODULUS = 10**15


def _hex13(text: str) -> str:
    k = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % ID_MODULUS
    return f"{k:013x}"


def envelope_ring(ring: np.ndarray) -> np.ndarray:
    """The boundary of a shape's envelope as GEOS builds it: from (min, min), x first."""
    pts = np.asarray(ring, dtype=np.float64)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)


def identifier(ring: np.ndarray) -> str:
    """The 13-hex M3LEO id of a chip from any ring of its vertices (lon, lat degrees)."""
    return _hex13(str(envelope_ring(ring).round(5)))


def list_hash(tile_ids: Iterable[str]) -> str:
    """geetiles' hash of an ordered list of chip ids: the ``<hash>`` in partition names."""
    return _hex13(" ".join(tile_ids))


def utm_zone(lon: float, lat: float) -> int | None:
    """EPSG code of the WGS 84 UTM zone geetiles picks for (lon, lat); None outside UTM.

    geetiles asks PROJ's database for the zones whose area of use holds the point and takes the
    first: on a zone edge that is the western zone, on the equator the northern one.
    """
    if not (-180.0 <= lon <= 180.0) or not (-80.0 <= lat <= 84.0):
        return None
    zone = min(int(math.floor((lon + 180.0) / 6.0)) + 1, 60)
    if lon > -180.0 and (lon + 180.0) % 6.0 == 0.0 and lon < 180.0:
        zone -= 1  # on the boundary: both zones qualify, the lower code comes first
    return (32600 if lat >= 0 else 32700) + zone


def ring_of(lon_min: float, lat_min: float, lon_max: float, lat_max: float) -> np.ndarray:
    """A chip's boundary in geetiles' vertex order: (min,min) -> (min,max) -> (max,max) -> ..."""
    return np.array(
        [
            [lon_min, lat_min],
            [lon_min, lat_max],
            [lon_max, lat_max],
            [lon_max, lat_min],
            [lon_min, lat_min],
        ],
        dtype=np.float64,
    )


def shoelace(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Areas of closed rings, one per row (x and y of shape (n, vertices))."""
    return 0.5 * np.abs(np.sum(xs[:, :-1] * ys[:, 1:] - xs[:, 1:] * ys[:, :-1], axis=1))
