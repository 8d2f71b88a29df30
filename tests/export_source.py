"""Test data for the export tests: a synthetic miniset, and sample plans over its files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from m3leo_cli.export import LayerFile, LayerSpec, SamplePlan, join_samples
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source
from m3leo_cli.tiles.reader import read_tile

LAYERS = (
    LayerSpec("s1grd-2020", "input"),
    LayerSpec("gssic", "input"),
    LayerSpec("esaworldcover-2020", "label"),
)
# GeoTIFF-only layers for the tests that exercise the machinery rather than the readers
FAST_LAYERS = (
    LayerSpec("s1grd-2020", "input"),
    LayerSpec("s2rgbm-2020", "input"),
    LayerSpec("esaworldcover-2020", "label"),
)
CONFIG = SynthConfig(regions=("europe",), editions=("miniset",), tiles=10, chip_px=16,
                     native_shape=(4, 5))  # fmt: skip
_CACHE: dict[str, SourceInfo] = {}


def shared_source(factory: pytest.TempPathFactory) -> SourceInfo:
    if "src" not in _CACHE:
        _CACHE["src"] = write_source(factory.mktemp("export-src"), CONFIG)
    return _CACHE["src"]


def private_copy(info: SourceInfo, dest: Path) -> Path:
    """A copy of the repo folder a test may damage; returns the new repo root."""
    repo = info.repo("miniset", "europe")
    shutil.copytree(repo.root, dest)
    return dest


def plan_for(
    info: SourceInfo,
    layers: tuple[LayerSpec, ...] = LAYERS,
    *,
    root: Path | None = None,
    allow_missing: bool = False,
) -> SamplePlan:
    repo = info.repo("miniset", "europe")
    base = root or repo.root
    rows = []
    for (dk, tid), fi in sorted(repo.tile_files.items()):
        t = repo.tiles[tid]
        lf = LayerFile(base / fi.path, fi.path, fi.sha256, "sha256", fi.size)
        rows.append((tid, t.split, "europe", dk, lf, t.bbox))
    return join_samples(layers, rows, allow_missing=allow_missing, edition="miniset")


def source_array(plan: SamplePlan, tile_id: str, layer: str) -> np.ndarray:
    sample = next(s for s in plan.samples if s.tile_id == tile_id)
    return read_tile(sample.files[layer].path, layer).data


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every output file's bytes (the export's own bookkeeping folder excluded)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".m3leo-export" not in p.parts
    }


def read_webdataset(urls: list[str]) -> list[dict]:
    """Every sample of the shards, decoded by the webdataset library itself.

    webdataset leaves its tar handles to the garbage collector; collect them here, with their
    ResourceWarning silenced, so they do not surface later in an unrelated test.
    """
    import gc
    import warnings

    import webdataset as wds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
        gc.collect()
    return samples


def export_once(fmt: str, source: SourceInfo, factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The shared source's plan exported in ``fmt`` (shards of 2, 2 workers): (plan, out,
    summary), for a format's read-back tests."""
    from m3leo_cli.export import ExportOptions, run_export

    plan = plan_for(source)
    out = factory.mktemp(fmt) / "out"
    opts = ExportOptions(fmt, out, shard_size=2, workers=2, command=("m3leo", "export"))
    return plan, out, run_export(plan, opts)
