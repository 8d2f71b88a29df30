"""netCDF tiles (GSSIC, GUNW, biomass) read with h5netcdf as flattened, labelled bands.

A variable ``v(season, deltadays, y, x)`` becomes one band per label pair, named
``v:<season>:<deltadays>`` from the coordinate variables of its leading dimensions; a plain
``v(y, x)`` is the band ``v``. GUNW keeps its variables in the group ``science/grids/data``
(``datepair`` labels, later date first). Fill values and NaN become the nodata mask;
georeferencing comes from the 1-D coordinate variables of the last two dimensions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import spec
from .errors import TileError
from .tiles import (
    Tile,
    corrupt,
    derived_parts,
    difference_encoded,
    resolve_bands,
)

_FILL_ATTRS = ("_FillValue", "missing_value")


def _label(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    if hasattr(value, "item"):
        value = value.item()
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace").strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _find_var(group: Any, name: str) -> Any | None:
    """A variable named ``name`` in ``group`` or any parent group (netCDF scoping)."""
    g = group
    while g is not None:
        if name in g.variables:
            return g.variables[name]
        g = g.parent if g.parent is not g else None
    return None


def _data_group(f: Any, datakind: str) -> Any:
    family = spec.parse_datakind(datakind).family
    if not family.group:
        return f
    g = f
    for part in family.group.strip("/").split("/"):
        if part not in g.groups:
            raise KeyError(f"group /{family.group} not found")
        g = g.groups[part]
    return g


def _band_vars(group: Any, datakind: str) -> Iterator[tuple[str, Any, list[tuple[int, ...]]]]:
    """(variable name, variable, index tuples of its bands) in a stable order."""
    import itertools

    family = spec.parse_datakind(datakind).family
    names = [n for n in family.variables if n in group.variables]
    names += sorted(n for n in group.variables if n not in names)
    for name in names:
        var = group.variables[name]
        dims = var.dimensions
        if len(dims) < 2 or name in dims:
            continue  # scalars, grid mappings and coordinate variables
        lead = var.shape[:-2]
        yield name, var, list(itertools.product(*(range(n) for n in lead)))


def _labels(group: Any, var: Any) -> list[list[str]]:
    out = []
    for dim, size in zip(var.dimensions[:-2], var.shape[:-2], strict=True):
        coord = _find_var(group, dim)
        if coord is not None and coord.shape == (size,):
            out.append([_label(v) for v in coord[...]])
        else:
            out.append([str(i) for i in range(size)])
    return out


def _catalogue(group: Any, datakind: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Band name -> (variable, index into its leading dimensions)."""
    cat: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, var, combos in _band_vars(group, datakind):
        labels = _labels(group, var)
        for combo in combos:
            parts = [name] + [labels[d][i] for d, i in enumerate(combo)]
            cat[":".join(parts)] = (name, combo)
    return cat


def _open(path: Path) -> Any:
    import h5netcdf

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:3] == b"CDF":  # netCDF-3 classic / 64-bit offset: not HDF5, h5netcdf cannot read it
        raise TileError(
            f"cannot read {path}: it is a netCDF-3 file, m3leo reads netCDF-4 (HDF5) tiles",
            f"convert it: nccopy -k nc4 {path.name} converted.nc",
        )
    # phony_dims: plain HDF5 datasets without dimension scales still get named dimensions
    return h5netcdf.File(path, "r", phony_dims="sort")


def nc_band_names(path: Path, datakind: str) -> tuple[str, ...]:
    try:
        with _open(path) as f:
            return tuple(_catalogue(_data_group(f, datakind), datakind))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise corrupt(path, exc) from None


def _georef(
    group: Any, var: Any
) -> tuple[str | None, tuple[float, ...], tuple[float, float, float, float]]:
    import numpy as np

    ydim, xdim = var.dimensions[-2:]
    h, w = var.shape[-2:]
    ycoord, xcoord = _find_var(group, ydim), _find_var(group, xdim)
    if ycoord is None or xcoord is None or ycoord.shape != (h,) or xcoord.shape != (w,):
        transform = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        return None, transform, (0.0, 0.0, float(w), float(h))
    ys = np.asarray(ycoord[...], dtype=np.float64)
    xs = np.asarray(xcoord[...], dtype=np.float64)
    dx = (xs[-1] - xs[0]) / (w - 1) if w > 1 else 1.0
    dy = (ys[-1] - ys[0]) / (h - 1) if h > 1 else -1.0
    x0, y0 = xs[0] - dx / 2, ys[0] - dy / 2
    transform = (float(dx), 0.0, float(x0), 0.0, float(dy), float(y0))
    xe, ye = x0 + dx * w, y0 + dy * h
    bounds = (float(min(x0, xe)), float(min(y0, ye)), float(max(x0, xe)), float(max(y0, ye)))
    crs = _crs(group, var, ycoord, xcoord)
    if crs is None and np.all(np.abs(xs) <= 180) and np.all(np.abs(ys) <= 90):
        crs = "EPSG:4326"  # M3LEO's native grids are all lon/lat degrees (format §3)
    return crs, transform, bounds


def _crs(group: Any, var: Any, ycoord: Any, xcoord: Any) -> str | None:
    gm = var.attrs.get("grid_mapping")
    if gm is not None:
        mapping = _find_var(group, _label(gm))
        wkt = mapping.attrs.get("crs_wkt") if mapping is not None else None
        if wkt is not None:
            from rasterio.crs import CRS

            try:
                return str(CRS.from_wkt(_label(wkt)).to_string())
            except Exception:  # noqa: BLE001 - an unparsable WKT just means "unknown CRS"
                return None
        if mapping is not None and _label(mapping.attrs.get("grid_mapping_name", "")) == (
            "latitude_longitude"
        ):
            return "EPSG:4326"
    units = {_label(c.attrs.get("units", "")) for c in (ycoord, xcoord)}
    names = {str(c.name).rsplit("/", 1)[-1] for c in (ycoord, xcoord)}
    if units & {"degrees_north", "degrees_east", "degree_north", "degree_east"} or names >= {
        "lat",
        "lon",
    }:
        return "EPSG:4326"  # M3LEO's native grids are all lon/lat (format §3)
    return None


def _plane(var: Any, combo: tuple[int, ...]) -> tuple[Any, Any]:
    """One band's stored values and its nodata mask (fill values, NaN)."""
    import numpy as np

    values = np.asarray(var[combo + (slice(None), slice(None))])
    mask = np.zeros(values.shape, dtype=bool)
    for attr in _FILL_ATTRS:
        fill = var.attrs.get(attr)
        if fill is not None:
            for fv in np.atleast_1d(np.asarray(fill)):
                mask |= np.isnan(values) if np.isnan(fv) else values == fv
    if values.dtype.kind == "f":
        mask |= np.isnan(values)
    return values, mask


def read_nc(path: Path, datakind: str, tile_id: str, bands: Sequence[str] | None) -> Tile:
    import numpy as np

    try:
        with _open(path) as f:
            group = _data_group(f, datakind)
            cat = _catalogue(group, datakind)
            names = resolve_bands(bands, tuple(cat), datakind)
            planes, masks = [], []
            for n in names:
                parts = derived_parts(n) if n not in cat else None
                if parts:
                    (v1, m1), (v2, m2) = (
                        _plane(group.variables[cat[p][0]], cat[p][1]) for p in parts
                    )
                    planes.append(difference_encoded(v1, v2))
                    masks.append(m1 | m2)
                    continue
                vname, combo = cat[n]
                values, mask = _plane(group.variables[vname], combo)
                planes.append(values)
                masks.append(mask)
            first_var = group.variables[cat[names[0]][0]] if names else None
            if first_var is None:
                first = next(iter(cat.values()), None)
                first_var = group.variables[first[0]] if first else None
            if first_var is None:
                raise ValueError("no band variables in the file")
            crs, transform, bounds = _georef(group, first_var)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise corrupt(path, exc) from None
    if planes:
        dtype = np.result_type(*[p.dtype for p in planes])
        data = np.stack([p.astype(dtype, copy=False) for p in planes])
        nodata = np.stack(masks)
    else:
        h, w = first_var.shape[-2:]
        data = np.zeros((0, h, w), dtype=first_var.dtype)
        nodata = np.zeros((0, h, w), dtype=bool)
    return Tile(
        tile_id,
        datakind,
        path,
        data,
        tuple(names),
        nodata if nodata.any() else None,
        crs,
        transform,
        bounds,
    )
