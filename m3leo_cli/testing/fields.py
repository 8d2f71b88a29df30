"""Smooth, plausible pixel values for the synthetic source.

Every layer is built from a few "landscape" fields: sums of plane waves in lon/lat whose
directions, wavelengths and phases depend only on (seed, region, name). They are functions of
position, so neighbouring tiles join up, pictures look like terrain, and compression works.
Each wave is evaluated as an outer product of 1-D vectors, so a 448x448 layer costs little.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# wavelengths in degrees: a few km to a few tens of km, so a 0.04 degree chip shows structure
_WAVELENGTHS = (0.011, 0.023, 0.047, 0.13)


def stable_int(*parts: object) -> int:
    """A stable 64-bit integer from any parts (Python's hash() changes per process)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def rng_for(*parts: object) -> np.random.Generator:
    return np.random.default_rng(stable_int(*parts))


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates of a north-up lon/lat raster covering ``bbox``."""

    bbox: tuple[float, float, float, float]
    height: int
    width: int

    @property
    def lon(self) -> np.ndarray:
        w, _, e, _ = self.bbox
        return w + (np.arange(self.width) + 0.5) * (e - w) / self.width

    @property
    def lat(self) -> np.ndarray:
        _, s, _, n = self.bbox
        return n - (np.arange(self.height) + 0.5) * (n - s) / self.height

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """GDAL geotransform order (x0, dx, 0, y0, 0, -dy)."""
        w, s, e, n = self.bbox
        return (w, (e - w) / self.width, 0.0, n, 0.0, -(n - s) / self.height)

    @property
    def pixel_metres(self) -> tuple[float, float]:
        w, s, e, n = self.bbox
        mid = np.radians((s + n) / 2)
        return (
            (e - w) / self.width * 111_320.0 * float(np.cos(mid)),
            (n - s) / self.height * 110_574.0,
        )


class Landscape:
    """Named smooth fields in [0, 1] over lon/lat, fixed by (seed, region)."""

    def __init__(self, seed: int, region: str) -> None:
        self.seed = seed
        self.region = region
        self._cache: dict[tuple[str, Grid], np.ndarray] = {}

    def field(self, name: str, grid: Grid) -> np.ndarray:
        key = (name, grid)
        got = self._cache.get(key)
        if got is not None:
            return got
        rng = rng_for("field", self.seed, self.region, name)
        lon, lat = grid.lon, grid.lat
        total = np.zeros((grid.height, grid.width), dtype=np.float64)
        weight = 0.0
        for wl in _WAVELENGTHS:
            theta = rng.uniform(0, np.pi)
            phase = rng.uniform(0, 2 * np.pi)
            amp = wl**0.6
            k = 2 * np.pi / (wl * rng.uniform(0.8, 1.25))
            a, b = k * np.cos(theta), k * np.sin(theta)
            # sin(a*lon + b*lat + p) = sin(a*lon + p) cos(b*lat) + cos(a*lon + p) sin(b*lat)
            total += amp * (
                np.outer(np.cos(b * lat), np.sin(a * lon + phase))
                + np.outer(np.sin(b * lat), np.cos(a * lon + phase))
            )
            weight += amp
        out = np.clip(0.5 + 0.5 * total / (weight * 0.75), 0.0, 1.0).astype(np.float32)
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = out
        return out

    def noise(self, grid: Grid, *parts: object, scale: float = 1.0) -> np.ndarray:
        """Small per-pixel noise (real sensors are not perfectly smooth)."""
        return rng_for("noise", self.seed, self.region, *parts).normal(
            0.0, scale, (grid.height, grid.width)
        )
