"""``--resample N``: every layer onto an N x N grid over the same tile footprint.

Label layers (spec ``Family.label``) use nearest neighbour so class codes stay class codes;
continuous layers use bilinear interpolation that ignores nodata pixels (weights renormalised
over valid neighbours). Both align pixel centres, like GDAL/rasterio with ``align_corners``
off. Written with numpy as two small matrix products per band, no GDAL round trip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def _nearest_index(src: int, dst: int) -> np.ndarray:
    import numpy as np

    centres = (np.arange(dst) + 0.5) * (src / dst)
    return np.clip(np.floor(centres).astype(np.int64), 0, src - 1)


def _bilinear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights: row i interpolates output pixel i from its two source neighbours."""
    import numpy as np

    pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    pos = np.clip(pos, 0, src - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    frac = pos - lo
    m = np.zeros((dst, src), dtype=np.float64)
    rows = np.arange(dst)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def resample(
    data: np.ndarray,
    size: int,
    *,
    nearest: bool,
    nodata: np.ndarray | None = None,
    family: str = "",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample (bands, H, W) ``data`` (and its nodata mask) to (bands, size, size).

    The dtype is kept: bilinear results are rounded and clipped for integer dtypes. S1 GRD
    uint16 holds signed dB, so it is interpolated as int16 (the encoding M3LEO's loader uses).
    """
    import numpy as np

    bands, h, w = data.shape
    if (h, w) == (size, size):
        return data, nodata
    if nearest:
        iy, ix = _nearest_index(h, size), _nearest_index(w, size)
        out = data[:, iy][:, :, ix]
        mask = None if nodata is None else nodata[:, iy][:, :, ix]
        return np.ascontiguousarray(out), (None if mask is None else np.ascontiguousarray(mask))
    signed = family == "s1grd" and data.dtype == np.uint16
    # float32 sources are interpolated in float32 (their output type: half the work); integer
    # sources in float64, so rounding back to the integer grid is exact
    work = np.float32 if data.dtype == np.float32 else np.float64
    values = (data.view(np.int16) if signed else data).astype(work)
    wy, wx = _bilinear_matrix(h, size).astype(work), _bilinear_matrix(w, size).astype(work)
    if nodata is None or not nodata.any():
        res = _apply(wy, values, wx)
        mask = None if nodata is None else np.zeros((bands, size, size), dtype=bool)
    else:
        valid = (~nodata).astype(work)
        num = _apply(wy, np.where(nodata, 0.0, values), wx)
        den = _apply(wy, valid, wx)
        mask = den <= 1e-12
        with np.errstate(invalid="ignore", divide="ignore"):
            res = np.where(mask, 0.0, num / np.where(mask, 1.0, den))
        fill = _fill_value(data, nodata)
        if fill is not None:
            res[mask] = fill
    target = np.dtype(np.int16) if signed else data.dtype
    out = cast(res, target)
    if signed:
        out = out.view(np.uint16)
    return out, mask


def _apply(wy: np.ndarray, values: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """``wy @ band @ wx.T`` for every band."""
    import numpy as np

    return np.einsum("yh,bhw,xw->byx", wy, values, wx, optimize=True)


def _fill_value(data: np.ndarray, nodata: np.ndarray) -> float | None:
    """The value the source uses where it has no data (kept in resampled nodata pixels)."""
    import numpy as np

    vals = data[nodata]
    if vals.size == 0:
        return None
    v = vals.flat[0]
    if np.issubdtype(data.dtype, np.floating) and np.isnan(v):
        return float("nan")
    return float(v)


def cast(values: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """Cast to ``dtype``: integers are rounded and clipped to the target range, NaN -> 0."""
    import numpy as np

    target = np.dtype(dtype)
    if values.dtype == target:
        return values
    if np.issubdtype(target, np.integer) and not np.issubdtype(values.dtype, np.integer):
        info = np.iinfo(target)
        clean = np.nan_to_num(np.rint(values), nan=0.0, posinf=info.max, neginf=info.min)
        return np.clip(clean, info.min, info.max).astype(target)
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        return np.clip(values, info.min, info.max).astype(target)
    return values.astype(target)
