"""Arrays of one tile -> one sample dict in TorchGeo's convention.

``image``: float32 (C, H, W), the input layers' selected bands in order, resampled onto the
``size x size`` grid (bilinear, nodata-aware: ``export.resample``), normalised with the saved
band statistics when asked (``export.normalize``), nodata -> 0 (the mean, once normalised).
``mask``: int64 (H, W) class indices (position of the stored code in ``classes``;
``IGNORE_INDEX`` where there is no data or a code outside the list) for classification, or
``target``: float32 (H, W) decoded values, NaN where there is no data, for regression.
Targets are resampled with nearest neighbour and never normalised. Plus ``tile_id`` (str) and
``bounds`` (float64 W, S, E, N in EPSG:4326).

``data.preprocessing=paper`` applies the authors' rules instead (see docs/train.md): their
constants and epsilon (``normstats.paper_mean_std``); WorldCover no-data and unknown codes
are class 0; GHS-BUILT-S and biomass targets are their native values, NaN filled with 0,
resized to 45 x 55 (bilinear, antialiased) and scaled back to the tile's mean; MODIS water
is 0 % tree cover; GUNW inputs are normalised on their native grid (constants over the valid
pixels of every date pair), no data set to 0 there, then resized with an antialiased
bilinear filter that blends those zeros in (m3leo's resampling leaves no-data pixels out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import spec
from ..errors import TrainConfigError
from .layers import IGNORE_INDEX, DataSpec, TargetSpec
from .normstats import RunStats

if TYPE_CHECKING:
    import numpy as np

    from ..export.normalize import BandStats


@dataclass
class LayerData:
    """The selected bands of one layer of one tile, as stored (``None``: no such band here)."""

    data: np.ndarray  # (present bands, H, W), stored dtype
    bands: Sequence[str | None]  # one per output channel; None rows are filled with nodata
    nodata: np.ndarray | None  # (present bands, H, W) True = no data


PAPER_TARGET_SHAPE = (45, 55)  # the authors' regression targets (GhsBuiltSTransform size)
PAPER_RESIZED = ("ghsbuilts", "biomass")


def _family(datakind: str) -> spec.Family:
    return spec.parse_datakind(datakind).family


def _decode_minus(values: np.ndarray, data: np.ndarray, family: str, mean: np.ndarray) -> None:
    """``decode_into(values, data)`` then ``values -= mean``, with the cast folded into the
    first arithmetic pass where decoding is a cast or S2's ``/ 255``: numpy computes these
    in float32 on the float32 cast of each value, as the two steps do (the same bits, one
    pass fewer over the image)."""
    import numpy as np

    from ..tiles.model import decode_into

    if family == "s1grd" and data.dtype == np.uint16:
        np.subtract(data.view(np.int16), mean, out=values, dtype=np.float32)
    elif family == "s2rgbm" and data.dtype == np.uint8:
        np.divide(data, np.float32(255.0), out=values, dtype=np.float32)
        values -= mean
    elif family != "modis44b006veg" and (
        data.dtype == np.float32 or (data.dtype.kind in "iu" and data.dtype.itemsize <= 2)
    ):
        np.subtract(data, mean, out=values, dtype=np.float32)
    else:  # decoding maps values (MODIS water), or a wider type: the two steps
        decode_into(values, data, family)
        values -= mean


def _bounded(dtype: np.dtype, mean: np.ndarray, std: np.ndarray) -> bool:
    """Whether ``(x - mean) / std`` is finite for every ``x`` of integer ``dtype``."""
    import numpy as np

    if dtype.kind not in "iu" or not (np.isfinite(mean).all() and np.isfinite(std).all()):
        return False
    info = np.iinfo(dtype)
    reach = max(abs(float(info.min)), float(info.max)) + float(np.abs(mean).max())
    low = float(np.abs(std).min())
    return low > 0.0 and reach / low < 1e37


class Assembler:
    """Turns the layers of a tile into a sample; one per dataset, cheap to pickle."""

    def __init__(
        self,
        data: DataSpec,
        inputs: Sequence[str],
        channels: Mapping[str, int],
        target: str | None,
        stats: Mapping[str, BandStats] | RunStats | None = None,
        normalized: bool = False,
    ) -> None:
        self.spec = data
        self.inputs = list(inputs)  # input datakinds, in channel order
        self.channels = dict(channels)  # datakind -> output channels
        self.target = target  # target datakind (None: unlabelled samples, image only)
        # datakind -> statistics (one set), or a RunStats (per region with norm_scope=region)
        self.run_stats = stats if isinstance(stats, RunStats) else None
        self.stats: dict[str, BandStats] = {}
        if stats is not None and not isinstance(stats, RunStats):
            self.stats = dict(stats)
        self.normalized = normalized  # the arrays are already normalised (an export did it)
        self._lut: np.ndarray | None = None
        self._norm: dict[tuple[str, str, tuple[str, ...]], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_channels(self) -> int:
        return sum(self.channels[d] for d in self.inputs)

    def input_array(
        self,
        datakind: str,
        layer: LayerData | None,
        out: np.ndarray | None = None,
        region: str | None = None,
    ) -> np.ndarray:
        """(channels, size, size) float32 for one input layer (zeros where it has no data),
        written into ``out`` when given (a slice of the sample's image: no concatenation)."""
        import numpy as np

        from ..export.resample import resample
        from ..tiles.model import decode_into

        size = self.spec.size
        if out is None:
            out = np.zeros((self.channels[datakind], size, size), dtype=np.float32)
        if layer is None:
            out[...] = 0.0
            return out
        family = _family(datakind)
        if self.spec.preprocessing == "paper" and family.name == "gunw":
            return self._paper_gunw(datakind, layer, out, region)
        data, mask = resample(
            layer.data, size, nearest=family.label, nodata=layer.nodata, family=family.name
        )
        rows = [i for i, b in enumerate(layer.bands) if b is not None]
        # decode straight into the image when every channel is present (the usual case)
        values = out if len(rows) == len(out) else np.empty(data.shape, dtype=np.float32)
        # integer sources decode to finite values; normalised, they stay finite when the
        # constants are (then the pass looking for NaN / inf is skipped)
        finite = data.dtype.kind in "iu"
        if self.normalized:
            np.copyto(values, data, casting="unsafe")
        else:
            stats = self.run_stats.for_region(region) if self.run_stats else self.stats
            if datakind in stats:
                bands = tuple(b for b in layer.bands if b is not None)
                mean, std = self._mean_std(stats, datakind, bands, region or "")
                _decode_minus(values, data, family.name, mean)
                values /= std
                finite = finite and _bounded(data.dtype, mean, std)
            else:
                decode_into(values, data, family.name)
        if mask is not None:
            np.copyto(values, np.float32(0.0), where=mask)
        # one summing pass finds NaN / inf (an overflowing sum only takes the slow path)
        if not finite and not np.isfinite(values.sum()):
            values[~np.isfinite(values)] = 0.0
        if values is not out:
            out[...] = 0.0
            out[rows] = values
        return out

    def _paper_gunw(
        self, datakind: str, layer: LayerData, out: np.ndarray, region: str | None
    ) -> np.ndarray:
        """The authors' GUNW input: normalised on the native grid, no data (fill values, NaN)
        set to 0 there, then resized onto the chip grid with an antialiased bilinear filter
        that takes those zeros as values (their ``FillNanByKey(0)`` then ``Resize``)."""
        import numpy as np
        import torch
        from torch.nn import functional as F

        from ..tiles.model import decode_into

        rows = [i for i, b in enumerate(layer.bands) if b is not None]
        out[...] = 0.0  # a rule with no pair in range: a zero channel (theirs raises)
        if not rows:
            return out
        values = np.empty(layer.data.shape, dtype=np.float32)
        decode_into(values, layer.data, "gunw")
        stats = self.run_stats.for_region(region) if self.run_stats else self.stats
        if datakind in stats and not self.normalized:
            bands = tuple(b for b in layer.bands if b is not None)
            mean, std = self._mean_std(stats, datakind, bands, region or "")
            values -= mean
            values /= std
        if layer.nodata is not None:
            values[layer.nodata] = 0.0
        values[~np.isfinite(values)] = 0.0
        size = self.spec.size
        resized = F.interpolate(
            torch.from_numpy(values)[None],
            size=(size, size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0]
        out[rows] = resized.numpy()
        return out

    def _mean_std(
        self, stats: Mapping[str, BandStats], datakind: str, bands: tuple[str, ...], region: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """(bands, 1, 1) float32 mean and std of the saved statistics, looked up once."""
        import numpy as np

        key = (
            region if self.run_stats and self.run_stats.scope == "region" else "",
            datakind,
            bands,
        )
        got = self._norm.get(key)
        if got is None:
            if self.spec.preprocessing == "paper":
                from ..tiles.accumulate import band_key
                from .normstats import paper_mean_std

                ms = []
                for b in bands:
                    stats[datakind].mean_std(b)  # a missing band raises with its fix
                    entry = stats[datakind].bands[band_key(datakind, b)[1]]
                    ms.append(paper_mean_std(entry, _family(datakind).name == "gunw"))
            else:
                ms = [stats[datakind].mean_std(b) for b in bands]
            got = (
                np.array([m for m, _ in ms], dtype=np.float32)[:, None, None],
                np.array([sd for _, sd in ms], dtype=np.float32)[:, None, None],
            )
            self._norm[key] = got
        return got

    def _target_spec(self) -> TargetSpec:
        if self.spec.target is None:
            raise TrainConfigError("this experiment has no target (data.target is null)")
        return self.spec.target

    def lut(self) -> np.ndarray:
        """Stored class code -> class index (IGNORE_INDEX for codes not in ``classes``)."""
        import numpy as np

        if self._lut is None:
            codes = self._target_spec().classes
            lut = np.full(max(max(codes) + 1, 65536), IGNORE_INDEX, dtype=np.int64)
            for i, code in enumerate(codes):
                lut[code] = i
            self._lut = lut
        return self._lut

    def target_slot(self) -> tuple[tuple[int, int], str] | None:
        """(shape, dtype) of the sample's target tensor (None: no target)."""
        if self.target is None or self.spec.target is None:
            return None
        if self.spec.preprocessing == "paper" and _family(self.target).name in PAPER_RESIZED:
            return PAPER_TARGET_SHAPE, "float32"
        task = self.spec.target.task
        size = self.spec.size
        return (size, size), ("int64" if task == "classification" else "float32")

    def target_array(self, layer: LayerData, out: np.ndarray | None = None) -> np.ndarray:
        """(size, size) int64 class indices or float32 values of the target band (class
        indices looked up straight into ``out`` when given and possible)."""
        import numpy as np

        from ..export.resample import resample
        from ..tiles.model import datakind_nodata, decode_values

        tspec = self._target_spec()
        assert self.target is not None
        family = _family(self.target)
        if self.spec.preprocessing == "paper" and family.name in PAPER_RESIZED:
            return self._paper_resized(layer, family.name)
        data, mask = resample(
            layer.data, self.spec.size, nearest=True, nodata=layer.nodata, family=family.name
        )
        implied = datakind_nodata(data, family.name)
        if implied is not None:
            mask = implied if mask is None else (mask | implied)
        if tspec.task == "classification" and self.spec.preprocessing == "paper":
            codes = np.asarray(tspec.classes)  # their map: codes -> index, else 0
            idx = np.zeros(data[0].shape, dtype=np.int64)
            for i, code in enumerate(codes):
                idx[data[0] == code] = i
            return idx
        if tspec.task == "classification":
            lut = self.lut()
            if data.dtype.kind == "u" and data.dtype.itemsize <= 2:  # codes index the table
                if out is not None and out.shape == data[0].shape and out.dtype == lut.dtype:
                    idx = np.take(lut, data[0], out=out, mode="clip")  # every code < len(lut)
                else:
                    idx = lut[data[0]]
            else:
                if not np.issubdtype(data.dtype, np.integer):
                    data = np.nan_to_num(data, nan=-1)
                codes = data[0].astype(np.int64)
                idx = np.full(codes.shape, IGNORE_INDEX, dtype=np.int64)
                ok = (codes >= 0) & (codes < len(lut))
                idx[ok] = lut[codes[ok]]
            if mask is not None:
                np.copyto(idx, IGNORE_INDEX, where=mask[0])
            return idx
        if self.spec.preprocessing == "paper" and family.name == "modis44b006veg":
            values = data[0].astype(np.float32)  # their convert_water_to_zero
            values[data[0] == spec.MODIS_WATER] = 0.0
            return values
        values = decode_values(data, family.name)[0]
        if mask is not None:
            values[mask[0]] = np.nan
        return values.astype(np.float32)

    def _paper_resized(self, layer: LayerData, family: str) -> np.ndarray:
        """The authors' regression target: native values, NaN -> 0, resized to 45 x 55 with
        an antialiased bilinear filter, scaled so its mean is the tile's (NaN-ignoring) mean
        when both are non-zero."""
        import numpy as np
        import torch
        from torch.nn import functional as F

        from ..tiles.model import datakind_nodata, decode_values

        values = decode_values(layer.data[:1], family)[0].astype(np.float32)
        mask = layer.nodata[0] if layer.nodata is not None else None
        implied = datakind_nodata(layer.data[:1], family)
        if implied is not None:
            mask = implied[0] if mask is None else (mask | implied[0])
        if mask is not None:
            values[mask] = np.nan
        with np.errstate(invalid="ignore"):
            original = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        t = torch.from_numpy(np.nan_to_num(values, nan=0.0))[None, None]
        out = F.interpolate(t, size=PAPER_TARGET_SHAPE, mode="bilinear", antialias=True,
                            align_corners=False)[0, 0]  # fmt: skip
        now = float(torch.nanmean(out))
        if now != 0.0 and original != 0.0 and np.isfinite(original):
            out = out * (original / now)
        return out.numpy().astype(np.float32)

    def sample(
        self,
        inputs: Mapping[str, LayerData | None],
        target: LayerData | None,
        tile_id: str,
        bounds: Sequence[float] | None,
        region: str | None = None,
        image: Any = None,
        target_out: Any = None,
    ) -> dict[str, Any]:
        """The sample dict; ``image``, ``target_out``: torch tensors to write the image and the
        target into (slots of batch tensors, shaped as ``target_slot`` says), else new ones."""
        import numpy as np
        import torch

        size = self.spec.size
        if image is None:
            image = torch.from_numpy(np.empty((self.num_channels, size, size), np.float32))
        array = image.numpy()
        start = 0
        for d in self.inputs:
            n = self.channels[d]
            self.input_array(d, inputs.get(d), array[start : start + n], region)
            start += n
        out: dict[str, Any] = {"image": image}
        if target is not None and self.spec.target is not None:
            key = "mask" if self.spec.target.task == "classification" else "target"
            slot = None if target_out is None else target_out.numpy()
            arr = self.target_array(target, slot)
            if slot is not None and arr.shape == slot.shape and arr.dtype == slot.dtype:
                if arr is not slot:
                    np.copyto(slot, arr)
                out[key] = target_out
            else:
                out[key] = torch.from_numpy(np.ascontiguousarray(arr))
        out["tile_id"] = tile_id
        b = [float("nan")] * 4 if bounds is None else [float(v) for v in bounds]
        out["bounds"] = torch.tensor(b, dtype=torch.float64)
        return out
