"""Turn a sample into arrays (read, resample, ``convert``) and run that in parallel.

Decoding is the expensive part of an export, so it runs in a thread pool (rasterio and h5py
release the GIL while they read and decompress); results come back in sample order through a
bounded window, so memory holds at most ``2 x workers`` samples whatever the export size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import M3leoError, TileError, unit_reason
from .base import ExportOptions, Failure
from .convert import convert
from .resample import resample
from .samples import LayerSpec, Sample

if TYPE_CHECKING:
    from concurrent.futures import Future

    import numpy as np

    from .normalize import BandStats

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class LayerArray:
    name: str
    data: np.ndarray  # (bands, H, W)
    band_names: tuple[str, ...]
    nodata: np.ndarray | None
    crs: str | None
    bounds: tuple[float, float, float, float]
    transform: tuple[float, ...]
    source_dtype: str


@dataclass
class Decoded:
    sample: Sample
    layers: dict[str, LayerArray]  # present layers, in the export's layer order
    _meta: dict[str, Any] | None = None

    def meta(self) -> dict[str, Any]:
        """Per-sample metadata: CRS and bounds (from the first layer); per layer its shape,
        dtype and nodata pixel count (with the nodata value when there are any)."""
        if self._meta is None:
            first = next(iter(self.layers.values()), None)
            layers: dict[str, Any] = {}
            for n, a in self.layers.items():
                count = int(a.nodata.sum()) if a.nodata is not None else 0
                entry: dict[str, Any] = {
                    "shape": list(a.data.shape),
                    "dtype": str(a.data.dtype),
                    "nodata_pixels": count,
                }
                if count:
                    entry["nodata_value"] = nodata_value(a.data, a.nodata)
                layers[n] = entry
            self._meta = {
                "tile_id": self.sample.tile_id,
                "split": self.sample.split,
                "region": self.sample.region,
                "crs": first.crs if first else None,
                "bounds": list(first.bounds) if first else self.sample.bounds,
                "layers": layers,
                "missing": list(self.sample.missing),
            }
        return {**self._meta, "layers": {k: dict(v) for k, v in self._meta["layers"].items()}}


def nodata_value(data: np.ndarray, mask: np.ndarray | None) -> float | int | None:
    """The stored value under the nodata mask (NaN for float fills), or None."""
    import numpy as np

    if mask is None or not mask.any():
        return None
    v = data[mask].flat[0]
    if np.issubdtype(data.dtype, np.floating):
        return None if np.isnan(v) else float(v)
    return int(v)


def decode_sample(
    sample: Sample,
    layers: Sequence[LayerSpec],
    options: ExportOptions,
    stats: dict[str, BandStats] | None = None,
) -> Decoded | Failure:
    """Read every present layer of ``sample``; a bad source file becomes a Failure."""
    from ..tiles.reader import read_tile

    out: dict[str, LayerArray] = {}
    for lay in layers:
        lf = sample.files.get(lay.name)
        if lf is None:
            continue
        why: str | None = None
        try:
            tile = read_tile(lf.path, lay.name)
        except M3leoError as exc:
            if not isinstance(exc, TileError):
                raise  # a run-wide problem (settings, a full disk): not this sample's
            why = exc.message
        except Exception as exc:  # anything a reader library raises is this sample's failure
            why = unit_reason(exc)
        if why is not None:
            return Failure(sample.tile_id, sample.split, sample.region, lay.name, str(lf.path), why)
        data, mask = tile.data, tile.nodata
        source_dtype = str(data.dtype)
        if options.resample:
            data, mask = resample(
                data,
                options.resample,
                nearest=lay.categorical,
                nodata=mask,
                family=lay.family.name,
            )
        where = f"tile {sample.tile_id}"
        data = convert(data, mask, lay, tile.band_names, options, stats, where)
        out[lay.name] = LayerArray(
            lay.name,
            data,
            tile.band_names,
            mask,
            tile.crs,
            tile.bounds,
            tile.transform,
            source_dtype,
        )
    return Decoded(sample, out)


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, window: int | None = None
) -> Generator[R, None, None]:
    """``map(fn, items)`` on ``workers`` threads, results in input order, at most ``window``
    items in flight (``Executor.map`` would submit everything up front)."""
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    window = window or 2 * workers
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="m3leo-export") as pool:
        it = iter(items)
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
