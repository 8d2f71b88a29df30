"""The synthetic M3LEO source: both editions of chosen regions, laid out like the Hub repos.

``write_source(root, SynthConfig(...))`` writes ``root/M3LEO-miniset/<region>/`` (plain chip
files, GeoJSON, split CSV) and/or ``root/M3LEO/<region>/`` (zstd Parquet shards, split and
``_parquet.csv`` CSVs) and returns a ``SourceInfo`` that says exactly what was written, so tests
can compute expected answers. ``m3leo serve root`` then serves it as the Hub would.
The same config always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from .. import spec
from ..errors import OutputExistsError
from ..progress import ProgressCallback, ProgressEvent, no_progress
from . import geometry, netcdf, packing, rasters, repo
from .fields import Grid, Landscape, rng_for
from .source import (
    FileInfo,
    RepoInfo,
    ShardInfo,
    SourceInfo,
    SynthConfig,
    TileInfo,
    check_config,
)

__all__ = [
    "FileInfo",
    "RepoInfo",
    "ShardInfo",
    "SourceInfo",
    "SynthConfig",
    "TileInfo",
    "check_config",
    "create_source",
    "datakinds_for",
    "write_source",
]


# --------------------------------------------------------------------------- config checks


def datakinds_for(config: SynthConfig, edition: str, region: str) -> tuple[str, ...]:
    expected = spec.expected_datakinds(edition, region)
    if config.datakinds is None:
        return expected
    full_only = set(spec.expected_datakinds("full", region)) - set(
        spec.expected_datakinds("miniset", region)
    )
    kinds = [dk.lower() for dk in config.datakinds]
    if edition == "miniset":
        kinds = [dk for dk in kinds if dk not in full_only]
    return tuple(sorted(dict.fromkeys(kinds)))


# --------------------------------------------------------------------------- generation


class _Region:
    """Everything for one region that both editions share: tiles, coverage, file bytes."""

    def __init__(self, config: SynthConfig, region: str) -> None:
        self.config = config
        self.region = spec.get_region(region)
        geoms = geometry.build_tiles(region, config.tiles, config.seed)
        splits = geometry.assign_splits(geoms, self.region.split_angle)
        self.geoms = {g.tile_id: g for g in geoms}
        self.tiles = {
            g.tile_id: TileInfo(
                g.tile_id, splits[g.tile_id], g.original_index, g.bbox, g.area_km2, g.ring
            )
            for g in geoms
        }
        self.land = Landscape(config.seed, region)
        self._bytes: dict[tuple[str, str], bytes] = {}
        self._coverage: dict[str, tuple[str, ...]] = {}

    def coverage(self, datakind: str) -> tuple[str, ...]:
        got = self._coverage.get(datakind)
        if got is None:
            family = spec.parse_datakind(datakind).family.name
            ids = list(self.tiles)
            cov = self.config.coverage  # a datakind's own entry wins over its family's
            frac = cov.get(datakind, cov.get(family, 1.0))
            frac = min(max(float(frac), 0.0), 1.0)
            keep = len(ids) if frac >= 1.0 else round(frac * len(ids))
            if frac > 0:
                keep = max(1, keep)
            order = rng_for("coverage", self.config.seed, self.region.name, datakind).permutation(
                len(ids)
            )
            chosen = set(order[:keep].tolist())
            got = tuple(t for i, t in enumerate(ids) if i in chosen)
            self._coverage[datakind] = got
        return got

    def file_bytes(self, datakind: str, tile_id: str) -> bytes:
        key = (datakind, tile_id)
        got = self._bytes.get(key)
        if got is None:
            got = self._make(datakind, tile_id)
            self._bytes[key] = got
        return got

    def _make(self, datakind: str, tile_id: str) -> bytes:
        cfg, land = self.config, self.land
        dk = spec.parse_datakind(datakind)
        bbox = self.tiles[tile_id].bbox
        chip = Grid(bbox, cfg.chip_px, cfg.chip_px)
        native = Grid(bbox, *cfg.native_shape)
        year = dk.year or 2020
        fam = dk.family.name
        if fam == "gssic":
            return netcdf.gssic(land, native)
        if fam == "gunw":
            assert dk.period is not None
            return netcdf.gunw(land, native, dk.period, tile_id, cfg.gunw_datepairs)
        if fam == "biomass":
            return netcdf.biomass(land, native)
        if fam == "s1grd":
            data, names = rasters.s1grd(land, chip, year, cfg.s1grd_dtype)
        elif fam == "s2rgbm":
            data, names = rasters.s2rgbm(land, chip, year)
        elif fam == "s2srm":
            data, names = rasters.s2srm(land, chip, year, cfg.s2srm_bands)
        elif fam == "esaworldcover":
            data, names = rasters.esaworldcover(land, chip)
        elif fam == "modis44b006veg":
            data, names = rasters.modis(land, chip)
        elif fam == "srtmdem":
            data, names = rasters.srtmdem(land, chip)
        elif fam == "ghsbuilts":
            data, names = rasters.ghsbuilts(land, native)
            return rasters.geotiff_bytes(data, names, native)
        else:  # pragma: no cover - every family in spec is handled above
            raise ValueError(f"no generator for {datakind}")
        return rasters.geotiff_bytes(data, names, chip)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put(info: RepoInfo, path: str, data: bytes, kind: str, **extra: str) -> FileInfo:
    dest = info.root / path
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    fi = FileInfo(path, len(data), _sha256(data), kind, **extra)
    info.files[path] = fi
    return fi


def _write_repo(
    root: Path, config: SynthConfig, edition: str, src: _Region, progress: ProgressCallback
) -> RepoInfo:
    reg = src.region
    ed = spec.get_edition(edition)
    kinds = datakinds_for(config, edition, reg.name)
    info = RepoInfo(
        edition=edition,
        region=reg.name,
        repo_id=ed.repo_id(reg.name),
        root=root / ed.org / reg.name,
        partition=reg.partition,
        datakinds=kinds,
        tiles=dict(src.tiles),
        coverage={dk: src.coverage(dk) for dk in kinds},
    )
    info.root.mkdir(parents=True, exist_ok=True)
    tiles = list(src.tiles.values())
    lfs: list[str] = []
    if edition == "miniset":
        for dk in kinds:
            for tid in info.coverage[dk]:
                path = info.tile_path(dk, tid)
                fi = _put(info, path, src.file_bytes(dk, tid), "tile", datakind=dk, tile_id=tid)
                info.tile_files[(dk, tid)] = fi
                lfs.append(path)
                progress(ProgressEvent("advance", phase="synth", files=1, bytes=fi.size))
        _put(
            info,
            reg.geojson(),
            repo.geojson(f"{reg.partition}_miniset", [src.geoms[t.tile_id] for t in tiles]),
            "aux",
        )
        _put(
            info,
            reg.split_csv("miniset"),
            repo.csv_bytes(
                ("identifier", "split", "original_index"),
                ((t.tile_id, t.split, t.original_index) for t in tiles),
            ),
            "aux",
        )
        _put(info, ".gitattributes", repo.gitattributes(sorted(lfs)), "aux")
    else:
        plan = packing.plan_shards([(t.tile_id, t.split) for t in tiles], config.tiles_per_shard)
        for pid, ids in plan.items():
            for tid in ids:
                info.parquet_ids[tid] = pid
        for dk in kinds:
            have = set(info.coverage[dk])
            for pid, ids in plan.items():
                present = [t for t in ids if t in have]
                if not present:
                    continue
                rows = []
                for tid in present:
                    content = src.file_bytes(dk, tid)
                    rows.append((f"{reg.name}/{info.tile_path(dk, tid)}", dk, content))
                    info.tile_files[(dk, tid)] = FileInfo(
                        info.tile_path(dk, tid), len(content), _sha256(content), "tile", dk, tid
                    )
                path = f"{reg.partition}/{dk}/{pid}.zstd.parquet"
                fi = _put(
                    info,
                    path,
                    packing.shard_bytes(rows, config.rows_per_row_group),
                    "shard",
                    datakind=dk,
                )
                n = config.rows_per_row_group
                split = pid.split("_")[0]
                info.shards[path] = ShardInfo(
                    path,
                    dk,
                    split,
                    pid,
                    tuple(present),
                    tuple(tuple(present[i : i + n]) for i in range(0, len(present), n)),
                    fi.size,
                    fi.sha256,
                )
                progress(ProgressEvent("advance", phase="synth", files=1, bytes=fi.size))
        _put(
            info,
            reg.split_csv("full"),
            repo.csv_bytes(("identifier", "split"), ((t.tile_id, t.split) for t in tiles)),
            "aux",
        )
        _put(
            info,
            reg.parquet_csv(),
            repo.csv_bytes(
                ("identifier", "split", "parquet_identifier"),
                ((t.tile_id, t.split, info.parquet_ids[t.tile_id]) for t in tiles),
            ),
            "aux",
        )
        _put(info, ".gitattributes", repo.gitattributes(), "aux")
    counts = {dk: len(info.coverage[dk]) for dk in kinds}
    _put(
        info,
        "README.md",
        repo.readme(edition, reg.name, reg.description, counts, len(tiles)),
        "aux",
    )
    return info


def write_source(
    root: Path, config: SynthConfig = SynthConfig(), *, progress: ProgressCallback = no_progress
) -> SourceInfo:
    """Write the synthetic source under ``root`` and describe it.

    Files already there are overwritten, others are left alone (see ``create_source`` for a
    clean output folder).
    """
    check_config(config)
    started = time.perf_counter()
    root = Path(root)
    progress(ProgressEvent("start", phase="synth"))
    repos: dict[tuple[str, str], RepoInfo] = {}
    for region in config.regions:
        src = _Region(config, region.lower())
        for edition in ("miniset", "full"):
            if edition in {e.lower() for e in config.editions}:
                repos[(edition, src.region.name)] = _write_repo(
                    root, config, edition, src, progress
                )
    progress(ProgressEvent("done", phase="synth"))
    return SourceInfo(root, config, repos, time.perf_counter() - started)


def create_source(
    out: Path,
    config: SynthConfig = SynthConfig(),
    *,
    overwrite: bool = False,
    progress: ProgressCallback = no_progress,
) -> SourceInfo:
    """``m3leo synth``: refuse a non-empty ``out`` unless ``overwrite``, then write the source.

    With ``overwrite`` the repo folders about to be written are removed first (nothing else).
    """
    check_config(config)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder", "choose another OUT folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                f"{out} is not empty", "choose an empty OUT folder or pass --overwrite"
            )
        for region in config.regions:
            for edition in config.editions:
                target = out / spec.get_edition(edition).org / spec.get_region(region).name
                if target.is_dir():
                    shutil.rmtree(target)
    return write_source(out, config, progress=progress)
