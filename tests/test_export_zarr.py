"""``--format zarr``: a Zarr v3 store per split, read back by xarray (and placed by rioxarray)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from export_source import LAYERS, export_once, plan_for, shared_source, source_array, tree_bytes

from m3leo_cli.errors import FormatDependencyError, OutputExistsError
from m3leo_cli.export import ExportOptions, run_export
from m3leo_cli.export.outputs import sha256_file
from m3leo_cli.tiles.reader import read_tile

xr = pytest.importorskip("xarray", reason="xarray is in the dev extra")
pytest.importorskip("zarr", reason="the zarr extra")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory: pytest.TempPathFactory):
    return export_once("zarr", source, tmp_path_factory)


def _open(out: Path, split: str, layer: str):
    return xr.open_zarr(out / split, group=layer)


def test_every_value_reads_back_through_xarray(exported) -> None:
    """Two inputs and a label: each sample's arrays equal read_tile's, in the stored dtype
    (the uint8 label untouched, not masked into floats), with its id, region and bbox."""
    plan, out, summary = exported
    assert summary.complete and summary.written == len(plan.samples)
    for split in plan.splits:
        samples = [s for s in plan.samples if s.split == split]
        for lay in LAYERS:
            ds = _open(out, split, lay.name)
            var = ds[lay.name]
            assert var.dims == ("sample", "band", "y", "x")
            assert list(ds["tile_id"].values) == [s.tile_id for s in samples]
            assert list(ds["region"].values) == ["europe"] * len(samples)
            assert list(ds["split"].values) == [split] * len(samples)
            assert bool(ds["present"].all())
            for i, s in enumerate(samples):
                want = source_array(plan, s.tile_id, lay.name)
                got = var.isel(sample=i).values
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
                tile = read_tile(s.files[lay.name].path, lay.name)
                np.testing.assert_allclose(ds["bbox"].isel(sample=i).values, tile.bounds)
            assert list(ds["band"].values) == list(tile.band_names)
            assert var.attrs["grid_mapping"] == "spatial_ref"
    wc = _open(out, plan.splits[0], "esaworldcover-2020")["esaworldcover-2020"]
    assert wc.dtype == np.uint8 and wc.attrs["values"] == "stored"
    assert wc.attrs["nodata"] == 0 and "_FillValue" not in wc.attrs


# rioxarray multiplies affine transforms with `*`, which affine >= 3.1 announces it will drop
@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")
def test_rioxarray_places_one_sample_on_its_bbox(exported) -> None:
    rioxarray = pytest.importorskip("rioxarray", reason="rioxarray is in the dev extra")
    assert rioxarray  # registers the .rio accessor
    plan, out, _ = exported
    split = plan.splits[0]
    s = next(s for s in plan.samples if s.split == split)
    for name in ("s1grd-2020", "gssic"):  # a 448-px-style chip grid and a coarse native grid
        tile = read_tile(s.files[name].path, name)
        one = _open(out, split, name)[name].isel(sample=0)
        assert one.rio.crs.to_epsg() == 4326
        np.testing.assert_allclose(one.rio.bounds(), tile.bounds, rtol=0, atol=1e-9)
        np.testing.assert_allclose(tuple(one.rio.transform())[:6], _affine(tile.transform),
                                   rtol=0, atol=1e-12)  # fmt: skip


def _affine(gdal_or_affine: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(gdal_or_affine[:6])


def test_metadata_records_every_file_and_the_store_is_sharded(exported) -> None:
    plan, out, _ = exported
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == "zarr" and meta["counts"]["samples"] == len(plan.samples)
    assert [m["tile_id"] for m in meta["samples"]] == [s.tile_id for s in plan.samples]
    for rel, info in meta["files"].items():
        assert sha256_file(out / rel) == info["sha256"]
    assert not list(out.rglob("*.part"))
    assert "zarr:stores" not in json.dumps(meta["layers"])  # the exporter's own bookkeeping
    for split in plan.splits:
        n = sum(1 for s in plan.samples if s.split == split)
        shards = list((out / split / "s1grd-2020" / "s1grd-2020" / "c").rglob("*"))
        assert len([p for p in shards if p.is_file()]) == -(-n // 2)  # one file per 2 samples


def test_partitioned_jobs_and_a_rerun_give_the_same_store(source, exported, tmp_path) -> None:
    plan, whole, _ = exported
    parts = tmp_path / "parts"
    for i in (1, 0):
        s = run_export(plan, ExportOptions("zarr", parts, shard_size=2, num_shards=2,
                                           shard_index=i, command=("m3leo", "export")))  # fmt: skip
    assert s.complete
    assert tree_bytes(parts) == tree_bytes(whole)
    again = run_export(
        plan, ExportOptions("zarr", parts, shard_size=2, command=("m3leo", "export"))
    )
    assert again.units_written == 0 and again.complete


def test_dask_engine_writes_the_same_store(source, exported, tmp_path) -> None:
    distributed = pytest.importorskip("distributed", reason="the dask extra")
    from m3leo_cli.config import load_settings
    from m3leo_cli.dist.engine import open_engine

    plan, whole, _ = exported
    out = tmp_path / "dask"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as lc:
        settings = load_settings(
            {"data_dir": tmp_path / "data", "engine": "dask", "scheduler": lc.scheduler_address}
        )
        with open_engine(settings) as pool:
            opts = ExportOptions("zarr", out, shard_size=2, command=("m3leo", "export"))
            assert run_export(plan, opts, settings=settings, pool=pool).complete
    assert tree_bytes(out) == tree_bytes(whole)


def test_another_format_in_the_folder_is_refused(source, exported) -> None:
    plan, out, _ = exported
    with pytest.raises(OutputExistsError) as exc:
        run_export(plan, ExportOptions("npz", out))
    assert "different export" in exc.value.message and "'format': 'zarr'" in exc.value.message


def test_missing_zarr_is_one_error_naming_the_extra(source, tmp_path, monkeypatch, capsys) -> None:
    from clirun import run

    monkeypatch.setitem(sys.modules, "zarr", None)  # as if not installed: import fails
    with pytest.raises(FormatDependencyError) as exc:
        run_export(plan_for(source), ExportOptions("zarr", tmp_path / "o"))
    assert exc.value.exit_code == 2 and "[zarr]" in exc.value.hint
    assert not (tmp_path / "o").exists()
    res = run(capsys, "export", "--format", "zarr", "--out", str(tmp_path / "c"), "-m", "s1grd",
              "--data-dir", str(tmp_path / "d"))  # fmt: skip
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert lines[0] == "Error: --format zarr needs the optional package 'zarr' (the zarr extra)"
    assert "pip install '.[zarr]'" in lines[1] and len(lines) == 2
    assert not (tmp_path / "c").exists()


def test_allow_missing_leaves_the_absent_layer_empty_and_marked(source, tmp_path) -> None:
    plan = plan_for(source, allow_missing=True)
    gap = next(s for s in plan.samples if s.missing)
    out = tmp_path / "o"
    assert run_export(plan, ExportOptions("zarr", out, shard_size=4)).complete
    ds = _open(out, gap.split, "gssic")
    i = list(ds["tile_id"].values).index(gap.tile_id)
    assert not bool(ds["present"][i]) and bool(np.isnan(ds["gssic"][i]).all())
    assert np.isnan(ds["bbox"][i]).all()
    s1 = _open(out, gap.split, "s1grd-2020")
    assert bool(s1["present"][i]) and s1["tile_id"].values[i] == gap.tile_id  # co-aligned
    np.testing.assert_array_equal(s1["s1grd-2020"][i].values,
                                  source_array(plan, gap.tile_id, "s1grd-2020"))  # fmt: skip


@pytest.mark.parametrize("fmt", ["zarr", "hf"])
def test_a_tile_on_another_grid_fails_with_the_resample_hint(source, tmp_path, fmt) -> None:
    """One array shape per layer: a tile whose grid differs is that sample's counted failure
    (named, with --resample as the way out), never a silently padded or cropped array."""
    if fmt == "hf":
        pytest.importorskip("datasets", reason="the hf extra")
    import rasterio
    from export_source import private_copy

    root = private_copy(source, tmp_path / "repo")
    plan = plan_for(source, root=root)
    victim = next(s for s in plan.samples[1:] if s.split == plan.samples[0].split)
    path = victim.files["s1grd-2020"].path
    with rasterio.open(path) as src:
        profile, data, names = src.profile, src.read(), src.descriptions
    profile.update(width=8, height=8)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[:, :8, :8])
        dst.descriptions = names
    s = run_export(plan, ExportOptions(fmt, tmp_path / "o", shard_size=2))
    assert [(f.tile_id, f.layer) for f in s.failures] == [(victim.tile_id, "s1grd-2020")]
    assert "--resample" in s.failures[0].reason and "[16, 8, 8]" in s.failures[0].reason
    assert s.written == len(plan.samples) - 1
