"""A fast path for reading the same netCDF bands from many tiles of one datakind.

``tiles.reader.read_tile`` rebuilds a file's band catalogue (every variable, its dimensions
and coordinate labels) through h5netcdf on each call, which costs several times the read
itself on small native-grid tiles. A training epoch reads the same bands of the same datakind
from thousands of files, so the catalogue is built once (from the first tile, by the reader's
own code) and later tiles are read with plain h5py: their label coordinates are checked
against the catalogue's first (a differing file falls back to ``read_tile``), then each
variable's box is read in one call, with the same nodata rule (fill values, NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import spec

_FILL_ATTRS = ("_FillValue", "missing_value")


@dataclass(frozen=True)
class NcPlan:
    """Where each wanted band lives: an HDF5 path, a leading index; the labels to check."""

    bands: tuple[str, ...]
    reads: tuple[tuple[str, tuple[int, ...]], ...]  # per band: dataset path, leading index
    coords: tuple[tuple[str, tuple[str, ...]], ...]  # coordinate dataset path, expected labels
    fills: tuple[tuple[str, tuple[float, ...]], ...]  # dataset path, fill values
    rows: tuple[str, ...] = ()  # y/lat coordinate datasets: a file storing them ascending
    # (south-up) is left to read_tile, which flips it north-up (issue 27)


def make_plan(path: Path, datakind: str, bands: Sequence[str]) -> NcPlan | None:
    """The plan for ``bands`` of ``datakind`` from one file, or None when it cannot be made
    (derived bands, unreadable file: the caller keeps using ``read_tile``)."""
    import numpy as np

    from ..tiles.netcdf import _catalogue, _data_group, _find_var, _label, _open

    try:
        with _open(path) as f:
            cat, bvars = _catalogue(_data_group(f, datakind), datakind)
            if any(b not in cat for b in bands):
                return None
            reads, coords, fills, rows = [], {}, {}, set()
            group = _data_group(f, datakind)
            for b in bands:
                vname, combo = cat[b]
                bv = bvars[vname]
                dpath = str(bv.var._h5ds.name)
                reads.append((dpath, combo))
                ycoord = _find_var(group, bv.dims[-2])
                if ycoord is not None:
                    rows.add(str(ycoord._h5ds.name))
                for dim in bv.dims[:-2]:
                    coord = _find_var(group, dim)
                    if coord is None:
                        return None
                    coords[str(coord._h5ds.name)] = tuple(_label(v) for v in coord[...])
                values: list[float] = []
                for attr in _FILL_ATTRS:
                    fill = bv.var.attrs.get(attr)
                    if fill is not None:
                        values += [float(v) for v in np.atleast_1d(np.asarray(fill))]
                fills[dpath] = tuple(values)
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return NcPlan(
        tuple(bands), tuple(reads), tuple(coords.items()), tuple(fills.items()), tuple(sorted(rows))
    )


def read_with_plan(plan: NcPlan, path: Path) -> tuple[Any, Any] | None:
    """(data (bands, H, W), nodata mask or None) of one file, or None if its labels differ."""
    import h5py
    import numpy as np

    from ..tiles.netcdf import _label

    try:
        with h5py.File(path, "r") as f:
            for cpath, labels in plan.coords:
                if cpath not in f or tuple(_label(v) for v in f[cpath][...]) != labels:
                    return None
            for ypath in plan.rows:
                y = f[ypath] if ypath in f else None
                if y is None or (y.shape[0] > 1 and y[0] < y[-1]):
                    return None  # south-up rows: read_tile flips them
            by_var: dict[str, list[tuple[int, ...]]] = {}
            for dpath, combo in plan.reads:
                by_var.setdefault(dpath, []).append(combo)
            fills = dict(plan.fills)
            slabs = {}
            for dpath, combos in by_var.items():
                ds = f[dpath]
                lead = len(combos[0])
                origin = tuple(min(c[d] for c in combos) for d in range(lead))
                box = tuple(slice(lo, max(c[d] for c in combos) + 1) for d, lo in enumerate(origin))
                values = np.asarray(ds[box])
                mask = np.zeros(values.shape, dtype=bool)
                for fv in fills.get(dpath, ()):
                    mask |= np.isnan(values) if np.isnan(fv) else values == fv
                if values.dtype.kind == "f":
                    mask |= np.isnan(values)
                slabs[dpath] = (values, mask, origin)
    except (OSError, KeyError, ValueError, TypeError):
        return None
    planes, masks = [], []
    for dpath, combo in plan.reads:
        values, mask, origin = slabs[dpath]
        at = tuple(i - o for i, o in zip(combo, origin, strict=True))
        planes.append(values[at])
        masks.append(mask[at])
    dtype = np.result_type(*[p.dtype for p in planes])
    data = np.stack([p.astype(dtype, copy=False) for p in planes])
    nodata = np.stack(masks)
    return data, (nodata if nodata.any() else None)


def is_netcdf(datakind: str) -> bool:
    return spec.parse_datakind(datakind).family.format == "netcdf"
