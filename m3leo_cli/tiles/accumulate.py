"""Mergeable per-band summaries: what one file contributes, how parts add up, what they report.

Every band of every file is reduced to a small accumulator: count, mean and M2 (sum of squared
deviations) merged exactly with Chan et al.'s parallel formula, min/max, and a fixed-bin
histogram for percentiles. Integer-coded bands get one bin per stored code (exact percentiles,
same linear interpolation as ``numpy.percentile``); float bands get 65,536 bins over the ordered
float32 bit patterns (sign, exponent and 7 mantissa bits), so a percentile is within 2**-7
(0.8 %) relative of the true value whatever the range. Accumulators merge in any order, so the
same totals come from one process, a pool or a cluster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec

if TYPE_CHECKING:
    import numpy as np


DEFAULT_PERCENTILES: tuple[float, ...] = (2.0, 50.0, 98.0)


_NBINS = 65536


_CLASS_FAMILIES = ("esaworldcover", "modis44b006veg")


@dataclass
class Accumulator:
    """Mergeable summary of one band's values (exact count/mean/M2/min/max, histogram)."""

    kind: str  # "u8" | "i16" | "u16": one bin per code; "f": float32 bit-pattern bins
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    pixels: int = 0  # every pixel seen, nodata included
    water: int = 0  # MODIS 200
    files: int = 0
    hist: Any = None  # np.ndarray[int64]
    classes: Any = None  # np.ndarray[int64] of 256 raw codes (label layers)

    def merge(self, other: Accumulator) -> None:
        n = self.count + other.count
        if other.count:
            delta = other.mean - self.mean
            self.mean += delta * other.count / n
            self.m2 += other.m2 + delta * delta * self.count * other.count / n
            self.min = min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.count = n
        self.pixels += other.pixels
        self.water += other.water
        self.files += other.files
        self.hist = _add(self.hist, other.hist)
        self.classes = _add(self.classes, other.classes)


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    a += b
    return a


@dataclass
class BandStats:
    modality: str
    band: str
    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    percentiles: dict[str, float | None]
    nodata_fraction: float
    pixels: int
    files: int
    water_fraction: float | None = None
    classes: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if d["water_fraction"] is None:
            del d["water_fraction"]
        if d["classes"] is None:
            del d["classes"]
        return d


@dataclass
class BandStatsReport:
    bands: list[BandStats]
    files: int
    tiles: int
    seconds: float
    edition: str = ""
    regions: tuple[str, ...] = ()
    saved_to: Path | None = None
    saved_where: str = ""  # "store", "cache" (the store is read-only) or "file" (--stats)
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "edition": self.edition,
            "regions": list(self.regions),
            "files": self.files,
            "tiles": self.tiles,
            "seconds": round(self.seconds, 3),
            "percentiles": list(self.percentiles),
            "saved_to": str(self.saved_to) if self.saved_to else None,
            "saved_where": self.saved_where or None,
            "bands": [b.as_dict() for b in self.bands],
        }


def _code_kind(values: np.ndarray, family: str) -> tuple[str, np.ndarray]:
    """Histogram mode and the integer codes (or float32 values) to bin."""
    import numpy as np

    if family == "s1grd" and values.dtype == np.uint16:
        return "i16", values.view(np.int16)
    if values.dtype == np.uint8:
        return "u8", values
    if values.dtype == np.int16:
        return "i16", values
    if values.dtype == np.uint16:
        return "u16", values
    return "f", values.astype(np.float32, copy=False)


def _float_keys(x: np.ndarray) -> np.ndarray:
    """Monotone 16-bit keys of float32 values: order of keys == order of values."""
    import numpy as np

    bits = x.view(np.uint32)
    ordered = np.where(bits & 0x80000000, ~bits, bits | 0x80000000)
    return (ordered >> 16).astype(np.intp)


def _key_value(kind: str, key: float, family: str) -> float:
    """The (decoded) value a histogram key stands for; float keys give their bin's midpoint."""
    import numpy as np

    if kind == "f":
        k = int(key)
        lo_o, hi_o = np.uint32(k << 16), np.uint32((k << 16) | 0xFFFF)

        def unorder(o: np.uint32) -> float:
            b = o & np.uint32(0x7FFFFFFF) if o & np.uint32(0x80000000) else ~o
            return float(np.array([b], dtype=np.uint32).view(np.float32)[0])

        lo, hi = unorder(lo_o), unorder(hi_o)
        return (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else lo
    code = int(key) - (32768 if kind == "i16" else 0)
    if family == "s2rgbm" and kind == "u8":
        return code / 255.0
    return float(code)


def reduce_band(
    family: str, raw: np.ndarray, nodata: np.ndarray | None, acc: Accumulator | None
) -> Accumulator:
    """Fold one band of one file into ``acc`` (histograms are added in place, over the
    band's own key range only, so a file costs O(pixels), not O(bins))."""
    import numpy as np

    from .model import decode_values

    kind, codes = _code_kind(raw, family)
    if acc is None:
        acc = Accumulator(kind=kind)
    values = decode_values(raw, family)
    valid = ~np.isnan(values)
    if nodata is not None:
        valid &= ~nodata
    part = Accumulator(kind=kind, pixels=int(raw.size), files=1)
    if family == "modis44b006veg":
        water = raw == spec.MODIS_WATER
        if nodata is not None:
            water &= ~nodata
        part.water = int(np.count_nonzero(water))
    if family in _CLASS_FAMILIES and raw.dtype == np.uint8:
        keep = raw if nodata is None else raw[~nodata]
        counts = np.bincount(keep.ravel(), minlength=256)
        acc.classes = counts if acc.classes is None else acc.classes + counts
    everything = bool(valid.all())
    sel = values.ravel() if everything else values[valid]
    if sel.size:
        x = sel.astype(np.float64)
        part.count = int(x.size)
        part.mean = float(x.mean())
        part.m2 = float(np.square(x - part.mean).sum())
        part.min, part.max = float(x.min()), float(x.max())
        c = codes.ravel() if everything else codes[valid]
        if kind == "f":
            keys = _float_keys(c)
        elif kind == "i16":
            keys = c.astype(np.intp) + 32768
        else:
            keys = c.astype(np.intp)
        lo, hi = int(keys.min()), int(keys.max())
        if acc.hist is None:
            acc.hist = np.zeros(256 if kind == "u8" else _NBINS, dtype=np.int64)
        acc.hist[lo : hi + 1] += np.bincount(keys - lo, minlength=hi - lo + 1)
    acc.merge(part)
    return acc


def band_key(datakind: str, band: str) -> tuple[str, str]:
    """GUNW bands are pooled per variable (date pairs differ from tile to tile)."""
    if spec.parse_datakind(datakind).family.name == "gunw":
        return datakind, band.split(":", 1)[0]
    return datakind, band


def reduce_files(batch: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Accumulator]:
    """Accumulators for every band of a batch of ``(datakind, path)`` files (worker entry)."""
    from .reader import read_tile

    out: dict[tuple[str, str], Accumulator] = {}
    for datakind, path in batch:
        tile = read_tile(Path(path), datakind)
        family = tile.family
        seen: set[tuple[str, str]] = set()
        for i, name in enumerate(tile.band_names):
            key = band_key(datakind, name)
            mask = tile.nodata[i] if tile.nodata is not None else None
            acc = reduce_band(family, tile.data[i], mask, out.get(key))
            if key in seen:
                acc.files -= 1  # a pooled GUNW variable counts its file once
            seen.add(key)
            out[key] = acc
    return out


def _percentile(acc: Accumulator, q: float, family: str) -> float | None:
    import numpy as np

    if not acc.count or acc.hist is None:
        return None
    rank = q / 100.0 * (acc.count - 1)
    lo, frac = int(math.floor(rank)), rank - math.floor(rank)
    cum = np.cumsum(acc.hist)
    k_lo = int(np.searchsorted(cum, lo + 1))
    k_hi = int(np.searchsorted(cum, min(lo + 2, acc.count)))
    v_lo, v_hi = _key_value(acc.kind, k_lo, family), _key_value(acc.kind, k_hi, family)
    value = v_lo + frac * (v_hi - v_lo)
    return float(min(max(value, acc.min), acc.max))


def _classes(acc: Accumulator, family: str) -> list[dict[str, Any]] | None:
    if acc.classes is None:
        return None
    counts = acc.classes
    valid = int(counts.sum())
    rows: list[dict[str, Any]] = []
    if family == "esaworldcover":
        valid -= int(counts[0])
        for code, (name, colour) in spec.ESA_WORLDCOVER_CLASSES.items():
            rows.append({"code": code, "name": name, "color": colour, "count": int(counts[code])})
        other = valid - sum(r["count"] for r in rows)
        if other:
            rows.append({"code": None, "name": "other codes", "count": other})
    else:  # MODIS percent tree cover: deciles plus water
        for lo in range(0, 100, 10):
            hi = 100 if lo == 90 else lo + 9
            rows.append(
                {
                    "code": f"{lo}-{hi}",
                    "name": f"tree cover {lo}-{hi} %",
                    "count": int(counts[lo : hi + 1].sum()),
                }
            )
        rows.append({"code": spec.MODIS_WATER, "name": "water", "count": int(counts[200])})
        other = valid - sum(r["count"] for r in rows)
        if other:
            rows.append({"code": None, "name": "other codes", "count": other})
    for r in rows:
        r["fraction"] = r["count"] / valid if valid else 0.0
    return rows


def finish_band(key: tuple[str, str], acc: Accumulator, percentiles: Sequence[float]) -> BandStats:
    datakind, band = key
    family = spec.parse_datakind(datakind).family.name
    has = acc.count > 0
    nodata = acc.pixels - acc.count - acc.water
    return BandStats(
        modality=datakind,
        band=band,
        count=acc.count,
        mean=acc.mean if has else None,
        std=math.sqrt(acc.m2 / acc.count) if has else None,
        min=acc.min if has else None,
        max=acc.max if has else None,
        percentiles={f"p{q:g}": _percentile(acc, q, family) for q in percentiles},
        nodata_fraction=nodata / acc.pixels if acc.pixels else 0.0,
        pixels=acc.pixels,
        files=acc.files,
        water_fraction=(acc.water / acc.pixels if acc.pixels else 0.0)
        if family == "modis44b006veg"
        else None,
        classes=_classes(acc, family),
    )
