"""``zarr``: one Zarr v3 store per split, ``<split>/``, one group per layer, for xarray and Dask.

``xarray.open_zarr(out / "train", group="s1grd-2020")`` opens a Dataset whose variable
``s1grd-2020`` has dims ``(sample, band, y, x)`` in the stored (or ``--dtype``) dtype, with the
coordinates ``tile_id``, ``region`` and ``present`` (sample), ``bbox`` (sample, bound: W, S, E,
N in EPSG:4326), ``band`` (band names), ``x`` (sample, x) and ``y`` (sample, y) (pixel centres
of each sample's own grid) and ``spatial_ref`` (CF grid mapping: ``crs_wkt``, ``spatial_ref``).
``ds.isel(sample=i)`` has 1-d ``x``/``y``, so rioxarray places that sample on its bbox. Units,
nodata and what was done to the values are CF-style attributes (``nodata`` rather than
``_FillValue``, so xarray never masks a label into floats).

Every band of every sample is one chunk (1, 1, H, W), so a reader that wants some bands
decodes only those (m3leo's loader: the 8 of S1's 16 bands an experiment uses cost half of
the whole sample); ``--shard-size`` samples make one shard file (Zarr v3
sharding), so a split is a few files per layer, not one per tile. A unit is one shard of every
array of every layer: it is encoded by zarr into memory (the shard's samples are held in memory
while they are written, so lower ``--shard-size`` for big layers), then written under ``.part``
names and renamed like every export file. The ``zarr.json`` documents (with consolidated
metadata at the root) are the same for every unit: the split's first unit writes them. A sample
that fails leaves its slot empty (``tile_id`` "", ``present`` false). Every tile of a layer
must share one grid: tiles on another grid fail with a hint to ``--resample``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .base import Exporter, Failure, Unit, UnitResult
from .decode import Decoded, decode_sample
from .outputs import HashingWriter, promote, write_bytes_atomic, writing
from .samples import Sample

REQUIRES = (("zarr", "zarr"),)
_QUIET = threading.Lock()  # catch_warnings changes process-wide filters: one unit at a time
STORES = "zarr:stores"  # layer_info key (not a layer): split -> layer -> grid, samples, CRS
# zstd at its default level (zarr's own default codec, core to every v3 reader). Measured on a
# synthetic 24-tile export (S1, GSSIC, WorldCover; best of 3, one thread): no compression
# 10.3 MiB in 1.64 s, zstd 1.0 MiB in 1.67 s, blosc zstd-1 + shuffle 0.9 MiB in 2.05 s, blosc
# lz4 + shuffle 1.9 MiB in 1.84 s. Synthetic tiles compress far better than real ones; the
# ranking (zstd nearly free, shuffle not worth its time) is what chose it.
ZSTD_LEVEL = 0  # 0: the library's default level (3)
BOUNDS = ("west", "south", "east", "north")


def _compressors() -> list[Any]:
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=ZSTD_LEVEL)]


def crs_attrs(crs: str | None) -> dict[str, Any]:
    """The CF grid-mapping attributes of ``crs`` (what rioxarray and GDAL read)."""
    from rasterio.crs import CRS

    c = CRS.from_user_input(crs or "EPSG:4326")
    wkt = c.to_wkt()
    attrs: dict[str, Any] = {"crs_wkt": wkt, "spatial_ref": wkt}
    if c.is_geographic:
        attrs["grid_mapping_name"] = "latitude_longitude"
    return attrs


def pixel_centres(bounds: Sequence[float], height: int, width: int) -> tuple[Any, Any]:
    """x (west to east) and y (north to south) of the pixel centres of a north-up grid."""
    import numpy as np

    west, south, east, north = bounds
    x = west + (np.arange(width) + 0.5) * ((east - west) / width)
    y = north - (np.arange(height) + 0.5) * ((north - south) / height)
    return x, y


class ZarrExporter(Exporter):
    name = "zarr"
    summary = "a Zarr v3 store per split, a group per layer, sharded (xarray.open_zarr)"
    sharded = True
    requires = REQUIRES

    def units(self, split: str, samples: Sequence[Sample], start: int) -> list[Unit]:
        """Also fix each layer's grid for this split (from its first readable tile), so every
        unit (and every Dask worker) writes the same array metadata."""
        stores = self.layer_info.setdefault(STORES, {})
        grids: dict[str, Any] = {}
        for lay in self.layers:
            if not self.layer_info.get(lay.name, {}).get("dtype"):
                continue  # no readable tile anywhere: nothing to store
            for s in samples:
                if lay.name not in s.files:
                    continue
                one = Sample(s.tile_id, s.split, s.region, {lay.name: s.files[lay.name]})
                d = decode_sample(one, [lay], self.options, self.stats)
                if isinstance(d, Failure):
                    continue
                a = d.layers[lay.name]
                grids[lay.name] = {"shape": list(a.data.shape), "crs": a.crs}
                break
        stores[split] = {"samples": len(samples), "layers": grids}
        return super().units(split, samples, start)

    def _store(self, split: str) -> dict[str, Any]:
        store: dict[str, Any] = self.layer_info[STORES][split]
        return store

    def outputs(self, unit: Unit) -> list[Path]:
        n = self._shard_number(unit)
        out = []
        for lay in self._store(unit.split)["layers"]:
            base = self.out / unit.split / lay
            out.append(base / lay / "c" / str(n) / "0" / "0" / "0")
            out += [base / f / "c" / str(n) for f in ("tile_id", "split", "region", "present")]
            out += [base / name / "c" / str(n) / "0" for name in ("bbox", "x", "y")]
        return out

    def _shard_number(self, unit: Unit) -> int:
        return int(unit.key.rsplit("-", 1)[1])

    def process(self, sample: Sample) -> Decoded | Failure:
        decoded = decode_sample(sample, self.layers, self.options, self.stats)
        if isinstance(decoded, Failure):
            return decoded
        grids = self._store(sample.split)["layers"]
        for name, arr in decoded.layers.items():
            want = grids.get(name)
            if want is None:
                continue
            path = str(sample.files[name].path)
            if list(arr.data.shape) != want["shape"]:
                why = (
                    f"grid {list(arr.data.shape)} differs from this split's {want['shape']} "
                    "(a Zarr array has one grid): export with --resample N"
                )
                return Failure(sample.tile_id, sample.split, sample.region, name, path, why)
            if arr.crs != want["crs"]:
                why = f"CRS {arr.crs} differs from this split's {want['crs']}"
                return Failure(sample.tile_id, sample.split, sample.region, name, path, why)
        return decoded

    def _build(self, split: str) -> tuple[Any, dict[str, Any]]:
        """The split's store skeleton in memory: every group and array, no chunk yet."""
        import json
        import warnings

        import numpy as np
        import zarr
        from zarr.storage import MemoryStore

        from .convert import treatment

        data: dict[str, Any] = {}
        mem = MemoryStore(data)
        store = self._store(split)
        n, size = store["samples"], max(1, self.options.shard_size)
        attrs: dict[str, Any] = {"m3leo_export": {"format": self.name, "split": split}}
        root = zarr.open_group(mem, mode="w", zarr_format=3, attributes=attrs)
        for lay in self.layers:
            grid = store["layers"].get(lay.name)
            if grid is None:
                continue
            info = self.layer_info[lay.name]
            bands, h, w = grid["shape"]
            dtype = np.dtype(info["dtype"])
            nodata = info.get("nodata")
            fill: Any = nodata if nodata is not None else (np.nan if dtype.kind == "f" else 0)
            g = root.create_group(lay.name, attributes={"role": lay.role})
            var_attrs = {
                "grid_mapping": "spatial_ref",
                "coordinates": "tile_id split region present bbox x y spatial_ref",
                "role": lay.role,
                "nodata": nodata,
                "source_dtype": info.get("source_dtype"),
                **{k: v for k, v in treatment(lay, self.options).items() if v is not None},
            }
            g.create_array(
                lay.name, shape=(n, bands, h, w), chunks=(1, 1, h, w),
                shards=(size, bands, h, w), dtype=dtype, fill_value=fill,
                compressors=_compressors(), dimension_names=["sample", "band", "y", "x"],
                attributes=json.loads(json.dumps(var_attrs)),
            )  # fmt: skip
            for name, kind in (("tile_id", str), ("split", str), ("region", str),
                               ("present", bool)):  # fmt: skip
                g.create_array(name, shape=(n,), chunks=(size,), dtype=kind,
                               dimension_names=["sample"])  # fmt: skip
            g.create_array("bbox", shape=(n, 4), chunks=(size, 4), dtype="float64",
                           fill_value=np.nan, dimension_names=["sample", "bound"])  # fmt: skip
            bound = g.create_array("bound", shape=(4,), chunks=(4,), dtype=str,
                                   dimension_names=["bound"])  # fmt: skip
            band = g.create_array("band", shape=(bands,), chunks=(bands,), dtype=str,
                                  dimension_names=["band"])  # fmt: skip
            for axis, length in (("x", w), ("y", h)):
                g.create_array(axis, shape=(n, length), chunks=(size, length), dtype="float64",
                               fill_value=np.nan, dimension_names=["sample", axis],
                               attributes={"units": "degrees", "axis": axis.upper()})  # fmt: skip
            g.create_array("spatial_ref", shape=(), dtype="int32", fill_value=0,
                           dimension_names=[], attributes=crs_attrs(grid["crs"]))  # fmt: skip
            bound[:] = np.array(BOUNDS)
            band[:] = np.array(info["bands"], dtype=str)
        with _QUIET, warnings.catch_warnings():  # "not part of the v3 spec (yet)": known
            warnings.simplefilter("ignore")  # (readers without it read the arrays' own zarr.json)
            zarr.consolidate_metadata(mem)
        return root, data

    def write(self, unit: Unit, items: Iterator[Any]) -> UnitResult:
        import numpy as np

        res = UnitResult(unit.key)
        decoded: list[Decoded | None] = []
        for item in items:
            if isinstance(item, Failure):
                res.failures.append(item)
                decoded.append(None)
                continue
            decoded.append(item)
            res.samples.append(item.meta())
        root, data = self._build(unit.split)
        fixed = set(data)  # the skeleton's own keys: zarr.json documents and band/bound names
        start = self._shard_number(unit) * max(1, self.options.shard_size)
        stop = start + len(decoded)
        for lay, grid in self._store(unit.split)["layers"].items():
            g = root[lay]
            k = len(decoded)
            present = np.array([d is not None and lay in d.layers for d in decoded])
            block = np.full((k, *grid["shape"]), g[lay].fill_value, dtype=g[lay].dtype)
            bbox = np.full((k, 4), np.nan)
            xs = np.full((k, grid["shape"][2]), np.nan)
            ys = np.full((k, grid["shape"][1]), np.nan)
            for i, d in enumerate(decoded):
                if d is None or lay not in d.layers:
                    continue
                a = d.layers[lay]
                block[i] = a.data
                bbox[i] = a.bounds
                xs[i], ys[i] = pixel_centres(a.bounds, a.data.shape[1], a.data.shape[2])
            g[lay][start:stop] = block
            g["tile_id"][start:stop] = np.array([d.sample.tile_id if d else "" for d in decoded])
            g["split"][start:stop] = np.array([d.sample.split if d else "" for d in decoded])
            g["region"][start:stop] = np.array([d.sample.region if d else "" for d in decoded])
            g["present"][start:stop] = present
            g["bbox"][start:stop] = bbox
            g["x"][start:stop] = xs
            g["y"][start:stop] = ys
        split_dir = self.out / unit.split
        for key in sorted(data):
            payload = data[key].to_bytes()
            path = split_dir / key
            if key in fixed:  # the same for every unit: the split's first unit writes them
                if self._shard_number(unit) == 0:
                    write_bytes_atomic(path, payload)
                    digest = hashlib.sha256(payload).hexdigest()
                    rel = path.relative_to(self.out).as_posix()
                    res.files[rel] = {"sha256": digest, "size": len(payload)}
                continue
            with writing(path) as fh:
                hw = HashingWriter(fh)
                hw.write(payload)
                fh.flush()
            promote(path)
            res.files[path.relative_to(self.out).as_posix()] = hw.info()
        return res
