"""What a tile is once read: the :class:`Tile` record, band naming rules and value decoding.

Shared by the GeoTIFF and netCDF readers (which sit beside this module and import it), and by
everything that turns stored values into physical ones (``decode``, ``DECODING``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import spec
from ..errors import CorruptTileError, TileNotLocalError, UnknownBandError

if TYPE_CHECKING:
    import numpy as np


# How stored values are decoded, per family (also shown by `m3leo info`).
DECODING: dict[str, str] = {
    "s1grd": "uint16 holding signed dB: view as int16 (e.g. 65521 -> -15 dB); float files as is",
    "s2rgbm": "uint8 0-255 = reflectance 0-0.3 as GEE drew it: decoded stored/255 "
    "(not reflectance: reflectance = decoded x 0.3)",
    "s2srm": "stored values as is (band list and scaling unknown)",
    "gssic": "float as stored; _FillValue/missing_value and NaN are nodata",
    "gunw": "float as stored; _FillValue/missing_value and NaN are nodata",
    "esaworldcover": "class codes 10..100 (spec.ESA_WORLDCOVER_CLASSES); 0 = nodata",
    "biomass": "agb in Mg/ha and its standard error agb_se; fill values are nodata",
    "ghsbuilts": "built-up surface as stored",
    "modis44b006veg": "percent tree cover 0-100; 200 = water (decoded to NaN, counted apart)",
    "srtmdem": "elevation (m) and slope (degrees) as stored",
}


# What a decoded value is, per family: metadata.json's ``units`` for decoded layers.
UNITS: dict[str, str] = {
    "s1grd": "dB (backscatter)",
    "s2rgbm": "stored / 255: 0-1 on the GEE visualisation's scale, not reflectance "
    "(surface reflectance = value x 0.3; stored values saturate at reflectance 0.3)",
    "s2srm": "as stored (scaling unknown)",
    "gssic": "as stored",
    "gunw": "as stored",
    "esaworldcover": "class codes",
    "biomass": "Mg/ha (agb and its standard error agb_se)",
    "ghsbuilts": "as stored (built-up surface)",
    "modis44b006veg": "percent tree cover 0-100 (water: NaN)",
    "srtmdem": "m (elevation), degrees (slope)",
}


_DERIVED_S1 = re.compile(r"^(?P<season>[a-z]+)_vv-vh(?P<orbit>asc|des)$")


@dataclass
class Tile:
    """One tile file read into memory: ``data`` is (bands, H, W) in the stored dtype."""

    tile_id: str
    datakind: str
    path: Path
    data: np.ndarray
    band_names: tuple[str, ...]
    nodata: np.ndarray | None  # True = no data; None when the file marks nothing
    crs: str | None
    transform: tuple[float, ...]  # affine (a, b, c, d, e, f): x = a*col + b*row + c, ...
    bounds: tuple[float, float, float, float]  # (west, south, east, north)

    @property
    def family(self) -> str:
        return spec.parse_datakind(self.datakind).family.name

    def band(self, name: str) -> np.ndarray:
        """The 2-D array of one band read into this tile."""
        try:
            return self.data[self.band_names.index(name)]
        except ValueError:
            raise UnknownBandError(name, list(self.band_names)) from None


def decode_values(values: np.ndarray, family: str) -> np.ndarray:
    """Stored values of ``family`` -> float32 physical values (see ``DECODING``)."""
    import numpy as np

    out = np.empty(values.shape, dtype=np.float32)
    decode_into(out, values, family)
    return out


def decode_into(out: np.ndarray, values: np.ndarray, family: str) -> None:
    """``decode_values`` written into a float32 array of the same shape (no temporary)."""
    import numpy as np

    if family == "s1grd" and values.dtype == np.uint16:
        np.copyto(out, values.view(np.int16), casting="unsafe")
        return
    np.copyto(out, values, casting="unsafe")
    if family == "s2rgbm" and values.dtype == np.uint8:
        out /= 255.0
    elif family == "modis44b006veg":
        out[values == spec.MODIS_WATER] = np.nan


def decode(tile: Tile) -> np.ndarray:
    """The tile's values in physical units (float32), NaN where there is no data."""
    import numpy as np

    out = decode_values(tile.data, tile.family)
    if tile.nodata is not None:
        out[tile.nodata] = np.nan
    return out


def resolve_bands(wanted: Sequence[str] | None, stored: Sequence[str], datakind: str) -> list[str]:
    """Expand band tokens against the stored names (variables, prefixes, derived bands)."""
    if wanted is None:
        return list(stored)
    derived = derived_band_names(datakind, stored)
    lower = {s.lower(): s for s in list(stored) + list(derived)}
    out: list[str] = []
    for token in wanted:
        t = token.strip()
        if t in stored or t in derived:
            out.append(t)
        elif t.lower() in lower:
            out.append(lower[t.lower()])
        elif any(s.startswith(t + ":") for s in stored):
            out.extend(s for s in stored if s.startswith(t + ":"))
        else:
            prefixes = list(dict.fromkeys(s.split(":")[0] for s in stored if ":" in s))
            valid = prefixes + list(stored) + list(derived)
            close = difflib.get_close_matches(t, valid, n=3, cutoff=0.6)
            raise UnknownBandError(t, close + [v for v in valid if v not in close])
    return list(dict.fromkeys(out))


def derived_parts(name: str) -> tuple[str, str] | None:
    """(vv band, vh band) a derived VV-VH band is computed from, or None for stored bands."""
    m = _DERIVED_S1.match(name)
    if not m:
        return None
    return f"{m.group('season')}_vv{m.group('orbit')}", f"{m.group('season')}_vh{m.group('orbit')}"


def difference_encoded(vv: np.ndarray, vh: np.ndarray) -> np.ndarray:
    """VV - VH in the stored encoding (so ``decode`` applies to derived bands unchanged)."""
    import numpy as np

    if vv.dtype == np.uint16:
        diff = vv.view(np.int16).astype(np.int32) - vh.view(np.int16).astype(np.int32)
        return np.clip(diff, -32768, 32767).astype(np.int16).view(np.uint16)
    return (vv.astype(np.float64) - vh.astype(np.float64)).astype(vv.dtype)


def datakind_nodata(values: np.ndarray, family: str) -> np.ndarray | None:
    """Nodata implied by the datakind itself (ESA WorldCover code 0), else None."""
    if family == "esaworldcover":
        return values == 0
    return None


def family_format(datakind: str) -> tuple[str, str]:
    family = spec.parse_datakind(datakind).family
    return family.format, family.name


def check_exists(path: Path) -> None:
    if not Path(path).is_file():
        raise TileNotLocalError(f"tile file {path} does not exist")


def repair_command(path: Path) -> str:
    """The verify command that re-downloads this store file (a bare one for files elsewhere)."""
    parts = Path(path).parts
    if len(parts) >= 5 and parts[-5] in spec.EDITIONS and parts[-4] in spec.REGIONS:
        # <data dir>/<edition>/<region>/<partition>/<datakind>/<tile>.<ext>: repair just this
        # tile, in its own edition (a bare `verify` looks at the default edition only)
        return (
            f"m3leo verify --repair --edition {parts[-5]} --region {parts[-4]} "
            f"--modality {parts[-2]} --tiles {Path(path).stem}"
        )
    return "m3leo verify --repair"


def corrupt(path: Path, exc: BaseException) -> CorruptTileError:
    reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    reason = reason.replace(" See previous exception for details.", "")  # rasterio noise
    return CorruptTileError(
        f"cannot read {path}: {reason}",
        f"the file is corrupt or truncated; run `{repair_command(Path(path))}` to re-download it",
    )


def derived_band_names(datakind: str, stored: Sequence[str]) -> tuple[str, ...]:
    """Bands computed on request: ``<season>_vv-vh<orbit>`` for S1 GRD (VV minus VH in dB)."""
    if spec.parse_datakind(datakind).family.name != "s1grd":
        return ()
    out = []
    for name in stored:
        m = re.match(r"^([a-z]+)_vv(asc|des)$", name)
        if m and f"{m.group(1)}_vh{m.group(2)}" in stored:
            out.append(f"{m.group(1)}_vv-vh{m.group(2)}")
    return tuple(out)
