"""netCDF tiles (GSSIC, GUNW, biomass) read with h5netcdf as flattened, labelled bands.

A variable ``v(season, deltadays, y, x)`` becomes one band per label pair, named
``v:<season>:<deltadays>`` from the coordinate variables of its leading dimensions; a plain
``v(y, x)`` is the band ``v``. GUNW keeps its variables in the group ``science/grids/data``
(``datepair`` labels, later date first). Fill values and NaN become the nodata mask;
georeferencing comes from the 1-D coordinate variables of the last two dimensions, and rows
stored south to north (an ascending y/lat coordinate) are flipped: every tile is read north-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .. import spec
from ..errors import TileError
from .model import Tile, corrupt, derived_parts, difference_encoded, resolve_bands

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


class _BandVar(NamedTuple):
    """A band-holding variable with its dimensions and shape looked up once.

    h5netcdf recomputes ``shape`` (every dimension's size) on each access, ~0.5 ms a time.
    """

    name: str
    var: Any
    dims: tuple[str, ...]
    shape: tuple[int, ...]


def _band_vars(group: Any, datakind: str) -> list[_BandVar]:
    """The variables that hold bands, in a stable order (family order, then by name)."""
    family = spec.parse_datakind(datakind).family
    names = [n for n in family.variables if n in group.variables]
    names += sorted(n for n in group.variables if n not in names)
    out = []
    for name in names:
        var = group.variables[name]
        dims = tuple(var.dimensions)
        if len(dims) < 2 or name in dims:
            continue  # scalars, grid mappings and coordinate variables
        out.append(_BandVar(name, var, dims, tuple(var.shape)))
    return out


def _labels(group: Any, bv: _BandVar) -> list[list[str]]:
    out = []
    for dim, size in zip(bv.dims[:-2], bv.shape[:-2], strict=True):
        coord = _find_var(group, dim)
        if coord is not None and coord.shape == (size,):
            out.append([_label(v) for v in coord[...]])
        else:
            out.append([str(i) for i in range(size)])
    return out


def _catalogue(
    group: Any, datakind: str
) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, _BandVar]]:
    """Band name -> (variable, index into its leading dimensions); the band variables by name."""
    import itertools

    cat: dict[str, tuple[str, tuple[int, ...]]] = {}
    bvars = _band_vars(group, datakind)
    for bv in bvars:
        labels = _labels(group, bv)
        for combo in itertools.product(*(range(n) for n in bv.shape[:-2])):
            parts = [bv.name] + [labels[d][i] for d, i in enumerate(combo)]
            cat[":".join(parts)] = (bv.name, combo)
    return cat, {bv.name: bv for bv in bvars}


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
            return tuple(_catalogue(_data_group(f, datakind), datakind)[0])
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise corrupt(path, exc) from None


class _Georef(NamedTuple):
    crs: str | None
    transform: tuple[float, ...]
    bounds: tuple[float, float, float, float]
    south_up: bool  # rows stored south to north (y/lat ascending): read_nc flips them


def _georef(group: Any, bv: _BandVar) -> _Georef:
    """CRS, north-up transform and bounds from the 1-D coordinates of the last two dimensions.

    The row order is read from the y/lat coordinate, never assumed: CF-style files often store
    latitude ascending (south first). Such rows are flipped by :func:`read_nc`, so every tile
    comes back north-up (row 0 the northernmost, a negative y step) like a GeoTIFF, and
    pictures, resampling and stacking with GeoTIFF layers need no special case.
    """
    import numpy as np

    var = bv.var
    ydim, xdim = bv.dims[-2:]
    h, w = bv.shape[-2:]
    ycoord, xcoord = _find_var(group, ydim), _find_var(group, xdim)
    if ycoord is None or xcoord is None or ycoord.shape != (h,) or xcoord.shape != (w,):
        transform = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        return _Georef(None, transform, (0.0, 0.0, float(w), float(h)), False)
    ys = np.asarray(ycoord[...], dtype=np.float64)
    xs = np.asarray(xcoord[...], dtype=np.float64)
    dx = (xs[-1] - xs[0]) / (w - 1) if w > 1 else 1.0
    dy = (ys[-1] - ys[0]) / (h - 1) if h > 1 else -1.0
    south_up = bool(dy > 0)
    if south_up:  # describe the flipped rows: the top row is the last stored one
        ys, dy = ys[::-1], -dy
    x0, y0 = xs[0] - dx / 2, ys[0] - dy / 2
    transform = (float(dx), 0.0, float(x0), 0.0, float(dy), float(y0))
    xe, ye = x0 + dx * w, y0 + dy * h
    bounds = (float(min(x0, xe)), float(min(y0, ye)), float(max(x0, xe)), float(max(y0, ye)))
    crs = _crs(group, var, ycoord, xcoord)
    if crs is None and np.all(np.abs(xs) <= 180) and np.all(np.abs(ys) <= 90):
        crs = "EPSG:4326"  # M3LEO's native grids are all lon/lat degrees (format §3)
    return _Georef(crs, transform, bounds, south_up)


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


def _read_slab(bv: _BandVar, combos: Sequence[tuple[int, ...]]) -> tuple[Any, Any, tuple[int, ...]]:
    """The smallest box of ``bv`` holding every band in ``combos``, read in one call.

    Returns the stored values, their nodata mask (fill values, NaN) and the box's origin in
    the leading dimensions. One read per variable instead of one per band: each h5netcdf
    read has a fixed cost (dimension and padding lookups) that dominated small tiles.
    """
    import numpy as np

    origin = tuple(min(c[d] for c in combos) for d in range(len(bv.shape) - 2))
    box = tuple(slice(lo, max(c[d] for c in combos) + 1) for d, lo in enumerate(origin)) + (
        slice(None),
        slice(None),
    )
    values = np.asarray(bv.var[box])
    mask = np.zeros(values.shape, dtype=bool)
    for attr in _FILL_ATTRS:
        fill = bv.var.attrs.get(attr)
        if fill is not None:
            for fv in np.atleast_1d(np.asarray(fill)):
                mask |= np.isnan(values) if np.isnan(fv) else values == fv
    if values.dtype.kind == "f":
        mask |= np.isnan(values)
    return values, mask, origin


def read_nc(path: Path, datakind: str, tile_id: str, bands: Sequence[str] | None) -> Tile:
    import numpy as np

    try:
        with _open(path) as f:
            group = _data_group(f, datakind)
            cat, bvars = _catalogue(group, datakind)
            names = resolve_bands(bands, tuple(cat), datakind)
            # stored bands each output band needs (a derived band needs two)
            sources = [(n,) if n in cat else (derived_parts(n) or (n,)) for n in names]
            wanted: dict[str, list[tuple[int, ...]]] = {}
            for src in sources:
                for b in src:
                    vname, combo = cat[b]
                    wanted.setdefault(vname, []).append(combo)
            slabs = {v: _read_slab(bvars[v], combos) for v, combos in wanted.items()}

            def plane(band: str) -> tuple[Any, Any]:
                vname, combo = cat[band]
                values, mask, origin = slabs[vname]
                at = tuple(i - o for i, o in zip(combo, origin, strict=True))
                return values[at], mask[at]

            planes, masks = [], []
            for src in sources:
                if len(src) == 2:
                    (v1, m1), (v2, m2) = plane(src[0]), plane(src[1])
                    planes.append(difference_encoded(v1, v2))
                    masks.append(m1 | m2)
                else:
                    values, mask = plane(src[0])
                    planes.append(values)
                    masks.append(mask)
            if names:
                first: _BandVar | None = bvars[cat[sources[0][0]][0]]
            else:
                first = next(iter(bvars.values()), None)
            if first is None:
                raise ValueError("no band variables in the file")
            crs, transform, bounds, south_up = _georef(group, first)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise corrupt(path, exc) from None
    if planes:
        dtype = np.result_type(*[p.dtype for p in planes])
        data = np.stack([p.astype(dtype, copy=False) for p in planes])
        nodata = np.stack(masks)
        if south_up:  # north-up like every GeoTIFF layer (see _georef)
            data = np.ascontiguousarray(data[:, ::-1, :])
            nodata = np.ascontiguousarray(nodata[:, ::-1, :])
    else:
        h, w = first.shape[-2:]
        data = np.zeros((0, h, w), dtype=first.var.dtype)
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
