"""netCDF-4 tiles of the synthetic source (gssic, gunw_*, biomass), written with h5netcdf.

Layouts follow the published files (docs/format.md): gssic has its variables at the root with
label coordinates (season, polarimetry, deltadays, param, feature); gunw keeps its variables in
the group ``science/grids/data`` over (datepair, y, x) with masked pixels; biomass has agb and
agb_se. Every variable gets lat/lon ``y``/``x`` coordinates and a ``spatial_ref`` grid mapping,
so GDAL's ``netcdf:<file>:<var>`` georeferences it in EPSG:4326. HDF5 object timestamps are
off (h5py's default), so the bytes depend on the inputs only.
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Any

import numpy as np

from .. import spec
from .fields import Grid, Landscape, stable_int

GUNW_FILL = np.float32(0.0)  # ARIA-style fill value of the GUNW layers
_REPEAT_DAYS = 6  # Sentinel-1 A+B repeat cycle
_COMPRESS: dict[str, Any] = {"compression": "gzip", "compression_opts": 4}


def _wkt() -> str:
    from rasterio.crs import CRS

    return str(CRS.from_epsg(4326).to_wkt())


def _georef(node: Any, grid: Grid) -> None:
    """Dims y/x, lat/lon coordinate variables with CF attributes, and the spatial_ref mapping."""
    node.dimensions.update({"y": grid.height, "x": grid.width})
    y = node.create_variable("y", ("y",), dtype="f8", data=grid.lat)
    y.attrs.update(standard_name="latitude", long_name="latitude", units="degrees_north", axis="Y")
    x = node.create_variable("x", ("x",), dtype="f8", data=grid.lon)
    x.attrs.update(standard_name="longitude", long_name="longitude", units="degrees_east", axis="X")
    ref = node.create_variable("spatial_ref", (), dtype="i4")
    wkt = _wkt()
    ref.attrs.update(
        grid_mapping_name="latitude_longitude",
        crs_wkt=wkt,
        spatial_ref=wkt,
        GeoTransform=" ".join(repr(v) for v in grid.transform),
    )


def _labels(node: Any, name: str, values: tuple[object, ...]) -> None:
    import h5py

    node.dimensions[name] = len(values)
    if all(isinstance(v, int) for v in values):
        node.create_variable(name, (name,), dtype="i4", data=np.asarray(values, dtype=np.int32))
    else:
        var = node.create_variable(name, (name,), dtype=h5py.string_dtype("utf-8"))
        var[:] = np.asarray(values, dtype=object)


def _data_var(node: Any, name: str, dims: tuple[str, ...], data: np.ndarray, **attrs: Any) -> Any:
    fill = attrs.pop("_FillValue", None)
    var = node.create_variable(
        name, dims, dtype="f4", data=data.astype(np.float32), fillvalue=fill, **_COMPRESS
    )
    var.attrs.update(grid_mapping="spatial_ref", **attrs)
    return var


def _encode(write: Any) -> bytes:
    import h5netcdf

    buf = io.BytesIO()
    with h5netcdf.File(buf, "w") as f:
        f.attrs.update(Conventions="CF-1.8", source="m3leo synthetic M3LEO source")
        write(f)
    return buf.getvalue()


def gssic(land: Landscape, grid: Grid) -> bytes:
    """Seasonal amplitude, coherence by temporal baseline, decay model and geometry."""
    rough = land.field("roughness", grid)
    veg = land.field("vegetation", grid)
    inc = land.field("incidence", grid)

    def write(f: Any) -> None:
        _georef(f, grid)
        for dim, values in (
            ("season", spec.GSSIC_SEASONS),
            ("polarimetry", spec.GSSIC_POLARIMETRY),
            ("deltadays", spec.GSSIC_DELTADAYS),
            ("param", spec.GSSIC_PARAMS),
            ("feature", spec.GSSIC_FEATURES),
        ):
            _labels(f, dim, tuple(values))
        seasons = len(spec.GSSIC_SEASONS)
        amp = np.stack(
            [
                np.stack(
                    [
                        -12 + 8 * (rough - 0.5) + s * 0.4 - (6 if p == "vh" else 0) * (0.7 + veg)
                        for p in spec.GSSIC_POLARIMETRY
                    ]
                )
                for s in range(seasons)
            ]
        )
        coh = np.stack(
            [
                np.stack(
                    [
                        np.clip(0.85 - 0.5 * veg - 0.004 * d - 0.03 * s, 0.05, 1)
                        for d in spec.GSSIC_DELTADAYS
                    ]
                )
                for s in range(seasons)
            ]
        )
        rho = np.clip(0.9 - 0.6 * veg, 0, 1)
        decay = np.stack(
            [np.stack([rho, 2 + 40 * (1 - veg) + s, 0.02 + 0.05 * rough]) for s in range(seasons)]
        )
        geom = np.stack([29 + 17 * inc, np.where(inc > 0.97, 2.0, 1.0)])
        _data_var(f, "amplitude", ("season", "polarimetry", "y", "x"), amp, units="dB")
        _data_var(f, "coherence", ("season", "deltadays", "y", "x"), coh, units="1")
        _data_var(f, "decaymodel", ("season", "param", "y", "x"), decay)
        _data_var(f, "geometry", ("feature", "y", "x"), geom)

    return _encode(write)


def gunw_datepairs(period: tuple[str, str], tile_id: str, count: int) -> tuple[str, ...]:
    """``count`` interferometric pairs inside ``period``, as "LATER_EARLIER" (YYYYMMDD_YYYYMMDD).

    Acquisitions fall every 6 days from a track-dependent start; the shortest baselines come
    first, and the result is listed in chronological order of the later date.
    """
    start, end = date.fromisoformat(period[0]), date.fromisoformat(period[1])
    offset = (1, 4)[stable_int("track", tile_id) % 2]
    days = []
    d = start + timedelta(days=offset)
    while d <= end:
        days.append(d)
        d += timedelta(days=_REPEAT_DAYS)
    pairs = sorted(
        ((later - earlier).days, later, earlier)
        for i, earlier in enumerate(days)
        for later in days[i + 1 :]
    )[:count]
    chosen = sorted((later, earlier) for _, later, earlier in pairs)
    return tuple(f"{a:%Y%m%d}_{b:%Y%m%d}" for a, b in chosen)


def gunw(land: Landscape, grid: Grid, period: tuple[str, str], tile_id: str, count: int) -> bytes:
    """Unwrapped phase, coherence and amplitude per date pair, in /science/grids/data."""
    pairs = gunw_datepairs(period, tile_id, count)
    deform = land.field("deformation", grid)
    veg = land.field("vegetation", grid)
    rough = land.field("roughness", grid)
    phase: list[np.ndarray] = []
    coh: list[np.ndarray] = []
    amp: list[np.ndarray] = []
    for i, pair in enumerate(pairs):
        later, earlier = (date(int(p[:4]), int(p[4:6]), int(p[6:])) for p in pair.split("_"))
        gap = (later - earlier).days
        atmo = land.field(f"atmosphere-{pair}", grid)
        masked = land.field(f"decorrelation-{i % 4}", grid) > 0.9
        p = (deform - 0.5) * gap * 0.8 + 6 * (atmo - 0.5) + 0.01
        c = np.clip(0.9 - 0.55 * veg - 0.004 * gap, 0.05, 1)
        a = 150 + 500 * rough
        for out, val in ((phase, p), (coh, c), (amp, a)):
            out.append(np.where(masked, GUNW_FILL, val))

    def write(f: Any) -> None:
        g = f.create_group(spec.GUNW_GROUP)
        _georef(g, grid)
        _labels(g, "datepair", pairs)
        dims = ("datepair", "y", "x")
        _data_var(g, "unwrappedPhase", dims, np.stack(phase), _FillValue=GUNW_FILL, units="radians")
        _data_var(g, "coherence", dims, np.stack(coh), _FillValue=GUNW_FILL, units="1")
        _data_var(g, "amplitude", dims, np.stack(amp), _FillValue=GUNW_FILL, units="1")

    return _encode(write)


def biomass(land: Landscape, grid: Grid) -> bytes:
    """Above-ground biomass (Mg/ha) and its standard error."""
    veg = land.field("vegetation", grid)
    wet = land.field("water", grid) < 0.16
    noise = land.noise(grid, "label", "biomass", grid.bbox, scale=4.0)
    agb = np.where(wet, 0.0, np.clip(320 * (veg - 0.25) + noise, 0, None))
    se = np.where(wet, 0.0, 5 + 0.3 * agb)

    def write(f: Any) -> None:
        _georef(f, grid)
        _data_var(f, "agb", ("y", "x"), agb, units="Mg ha-1", long_name="above-ground biomass")
        _data_var(
            f,
            "agb_se",
            ("y", "x"),
            se,
            units="Mg ha-1",
            long_name="above-ground biomass standard error",
        )

    return _encode(write)
