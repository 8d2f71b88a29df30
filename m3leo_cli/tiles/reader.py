"""Read any M3LEO tile into named arrays.

One entry point, :func:`read_tile`, for every datakind: GeoTIFFs (band descriptions) and
netCDF files (variables flattened with their coordinate labels, e.g. ``coherence:winter:12``).
Only the asked-for bands are read. Values come back exactly as stored; :func:`decode` turns them
into physical units (documented per datakind in ``DECODING`` and docs/tiles.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .geotiff import read_tif, tif_names
from .integrity import check_intact
from .model import (
    DECODING,
    Tile,
    decode,
    decode_values,
    derived_band_names,
    family_format,
)

__all__ = [
    "DECODING",
    "Tile",
    "band_names",
    "decode",
    "decode_values",
    "derived_band_names",
    "read_tile",
]


def band_names(path: Path, datakind: str) -> tuple[str, ...]:
    """The stored band names of a tile file, in order (derived bands not included)."""
    fmt, _ = family_format(datakind)
    check_intact(path)
    if fmt == "geotiff":
        return tif_names(path, datakind)
    from .netcdf import nc_band_names

    return nc_band_names(path, datakind)


def read_tile(path: Path, datakind: str, bands: Sequence[str] | None = None) -> Tile:
    """Read ``bands`` (default: all stored bands) of one tile file.

    A band token is a stored band name (``winter_vvasc``, ``coherence:winter:12``, ``agb``), a
    prefix of ``:``-separated labels selecting several (``coherence``, ``coherence:winter``) or
    a derived band (``winter_vv-vhasc``). Raises UnknownBandError (listing the valid names),
    CorruptTileError (naming the file; also a file that changed since m3leo wrote it, see
    ``tiles.integrity``) or TileNotLocalError (no such file).
    """
    path = Path(path)
    fmt, family = family_format(datakind)
    check_intact(path)  # one stat, a re-hash only when the file changed since it was written
    tile_id = path.name.split(".", 1)[0]
    if fmt == "geotiff":
        return read_tif(path, datakind, tile_id, bands)
    from .netcdf import read_nc

    return read_nc(path, datakind, tile_id, bands)


# --------------------------------------------------------------------------- band selection


# --------------------------------------------------------------------------- GeoTIFF
