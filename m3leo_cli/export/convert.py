"""What ``--normalize`` and ``--dtype`` do to one layer, and doing it in physical units.

Silent wrong data is the worst failure of an export, so the rules are strict:

- Label layers (``--label``) and class layers (ESA WorldCover codes, whatever their role) are
  never normalised or cast: they keep their stored codes and dtype.
- ``--dtype`` converts *decoded* values (``tiles.model.decode_values``: S1 GRD uint16 ->
  signed dB, S2 RGB uint8 -> stored/255 on the visualisation's 0..1 scale, which is not
  reflectance, ...), never the stored code. Nodata becomes NaN in a float
  target. An integer target must hold every value exactly (in range, whole numbers, no nodata
  to mark); otherwise the export is refused with a hint (``DtypeRangeError``), before anything
  is written when the first tile already shows it.
- ``--normalize`` gives ``(decode(x) - mean) / std`` as float32 (then ``--dtype`` if given).

``treatment`` describes the result per layer for ``metadata.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import DtypeRangeError

if TYPE_CHECKING:
    import numpy as np

    from .base import ExportOptions
    from .normalize import BandStats
    from .samples import LayerSpec


def keeps_values(lay: LayerSpec) -> bool:
    """True for layers whose stored values are written as they are (labels, class codes)."""
    return lay.role == "label" or lay.family.name == "esaworldcover"


def treatment(lay: LayerSpec, options: ExportOptions) -> dict[str, Any]:
    """What was done to ``lay``'s values, recorded per layer in ``metadata.json``."""
    resampled = None
    if options.resample:
        resampled = "nearest" if lay.categorical else "bilinear (nodata-aware)"
    if keeps_values(lay):
        why = "label layer" if lay.role == "label" else "class codes"
        return {
            "values": "stored",
            "normalized": False,
            "cast": None,
            "resampled": resampled,
            "note": f"{why}: never normalised or cast",
        }
    if options.normalize:
        values = "normalized"
    elif options.dtype:
        values = "decoded"  # not "physical": S2 decodes to stored/255, not reflectance
    else:
        values = "stored"
    out: dict[str, Any] = {
        "values": values,
        "normalized": bool(options.normalize),
        "cast": options.dtype,
        "resampled": resampled,
    }
    if values != "stored":
        from ..tiles.model import UNITS

        unit = UNITS.get(lay.family.name, "as stored")
        out["units"] = unit if values == "decoded" else f"z-scores of: {unit}"
    return out


def convert(
    data: np.ndarray,
    nodata: np.ndarray | None,
    lay: LayerSpec,
    bands: Sequence[str],
    options: ExportOptions,
    stats: Mapping[str, BandStats] | None,
    where: str = "",
) -> np.ndarray:
    """Apply ``--normalize`` / ``--dtype`` to one layer of one tile (see the module rules)."""
    if keeps_values(lay) or not (options.normalize or options.dtype):
        return data
    import numpy as np

    from ..tiles.model import decode_values

    family = lay.family.name
    if options.normalize and stats is not None and lay.name in stats:
        values = stats[lay.name].apply(data, bands, nodata, family)
    else:
        values = decode_values(data, family)
        if nodata is not None:
            values[nodata] = np.nan
    if not options.dtype:
        return values
    return to_dtype(values, options.dtype, lay.name, where)


def to_dtype(values: np.ndarray, dtype: str, layer: str, where: str = "") -> np.ndarray:
    """Decoded float ``values`` (NaN = nodata) as ``dtype``, or DtypeRangeError."""
    import numpy as np

    target = np.dtype(dtype)
    at = f" ({where})" if where else ""
    finite = values[np.isfinite(values)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    if np.issubdtype(target, np.floating):
        info = np.finfo(target)
        if finite.size and (hi > float(info.max) or lo < float(info.min)):
            raise _refuse(layer, dtype, f"values {lo:g}..{hi:g} overflow {dtype}{at}")
        return values.astype(target)
    info_i = np.iinfo(target)
    if finite.size and (lo < info_i.min or hi > info_i.max):
        raise _refuse(layer, dtype, f"values {lo:g}..{hi:g} do not fit {dtype}{at}")
    if finite.size and not np.array_equal(finite, np.rint(finite)):
        raise _refuse(layer, dtype, f"values {lo:g}..{hi:g} are not whole numbers{at}")
    if finite.size != values.size:
        raise _refuse(layer, dtype, f"{dtype} has no value for nodata pixels{at}")
    return values.astype(target)


def _refuse(layer: str, dtype: str, why: str) -> DtypeRangeError:
    return DtypeRangeError(
        f"--dtype {dtype} cannot hold the decoded values of {layer}: {why}",
        "use a float type (--dtype float32 or float16), or leave --dtype out to keep the "
        "stored values",
    )
