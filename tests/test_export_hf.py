"""``--format hf``: Parquet with ``datasets`` Features, a dataset card and ``croissant.json``,
read back by ``datasets.load_dataset`` and by ``mlcroissant``."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from export_source import LAYERS, export_once, plan_for, shared_source, source_array

from m3leo_cli.errors import FormatDependencyError
from m3leo_cli.export import ExportOptions, run_export
from m3leo_cli.export.outputs import sha256_file
from m3leo_cli.tiles.reader import read_tile

datasets = pytest.importorskip("datasets", reason="the hf extra")
mlc = pytest.importorskip("mlcroissant", reason="the hf extra")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory: pytest.TempPathFactory):
    return export_once("hf", source, tmp_path_factory)


def test_load_dataset_returns_arrays_of_the_stored_shape_and_dtype(exported, tmp_path) -> None:
    plan, out, summary = exported
    assert summary.complete and summary.written == len(plan.samples)
    for split in plan.splits:
        samples = [s for s in plan.samples if s.split == split]
        hf_split = {"val": "validation"}.get(split, split)  # datasets' name for a val/ folder
        ds = datasets.load_dataset("parquet", data_dir=str(out), split=hf_split,
                                   cache_dir=str(tmp_path / "cache"))  # fmt: skip
        for lay in LAYERS:
            want0 = source_array(plan, samples[0].tile_id, lay.name)
            feat = ds.features[lay.name]
            assert isinstance(feat, datasets.Array3D)
            assert feat.dtype == str(want0.dtype) and feat.shape == want0.shape
        rows = ds.with_format("numpy", dtype=None)
        assert [str(t) for t in rows["tile_id"]] == [s.tile_id for s in samples]
        for i, s in enumerate(samples):
            row = rows[i]
            assert row["split"] == split and row["region"] == "europe"
            tile = read_tile(s.files["s1grd-2020"].path, "s1grd-2020")
            np.testing.assert_array_equal(row["bounds"], tile.bounds)
            for lay in LAYERS:
                want = source_array(plan, s.tile_id, lay.name)
                assert row[lay.name].dtype == want.dtype  # the uint8 label untouched
                np.testing.assert_array_equal(row[lay.name], want)


CROISSANT_READER = """
import json, sys
import mlcroissant as mlc
ds = mlc.Dataset(jsonld=sys.argv[1])  # raises on a validation error
out = {"errors": sorted(ds.metadata.issues.errors), "records": {}}
for split in sys.argv[3:]:
    out["records"][split] = [
        {k.split("/", 1)[1]: v.decode() if isinstance(v, bytes) else v for k, v in r.items()}
        for r in ds.records(split)
    ]
open(sys.argv[2], "w").write(json.dumps(out))
"""


def test_croissant_validates_and_yields_the_records(exported, tmp_path) -> None:
    """mlcroissant validates croissant.json and yields every record, values equal to the
    sources'. It runs in its own interpreter, as a Croissant consumer does: with `datasets`
    imported, pandas cannot read datasets' Array3D columns (its pandas dtype cannot be hashed),
    and mlcroissant reads Parquet through pandas."""
    import subprocess

    plan, out, _ = exported
    got = tmp_path / "records.json"
    cmd = [sys.executable, "-c", CROISSANT_READER, str(out / "croissant.json"), str(got),
           *plan.splits]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(got.read_text())
    assert doc["errors"] == []
    for split in plan.splits:
        samples = [s for s in plan.samples if s.split == split]
        recs = doc["records"][split]
        assert [r["tile_id"] for r in recs] == [s.tile_id for s in samples]
        for s, r in zip(samples, recs, strict=True):
            assert r["split"] == split and r["crs"] == "EPSG:4326"
            for lay in LAYERS:
                want = source_array(plan, s.tile_id, lay.name)
                got_arr = np.asarray(r[lay.name], want.dtype)
                assert got_arr.shape == want.shape
                np.testing.assert_array_equal(got_arr, want)


def test_the_card_names_each_split_for_the_hub(exported, tmp_path) -> None:
    from huggingface_hub import DatasetCard

    plan, out, _ = exported
    card = DatasetCard.load(out / "README.md")
    (config,) = card.data.configs
    assert config["data_files"] == [{"split": s, "path": f"{s}/*.parquet"} for s in plan.splits]
    assert "load_dataset" in card.text and "esaworldcover-2020" in card.text
    # the folder as a dataset repo (what `hf upload` publishes): the card's splits, by name
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert list(ds) == plan.splits
    assert [len(ds[s]) for s in plan.splits] == [
        sum(1 for x in plan.samples if x.split == s) for s in plan.splits
    ]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == "hf" and {"README.md", "croissant.json"} <= set(meta["files"])
    for rel, info in meta["files"].items():
        assert sha256_file(out / rel) == info["sha256"]


def test_missing_datasets_is_one_error_naming_the_extra(source, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mlcroissant", None)  # as if not installed
    with pytest.raises(FormatDependencyError) as exc:
        run_export(plan_for(source), ExportOptions("hf", tmp_path / "o"))
    assert exc.value.exit_code == 2 and "[hf]" in exc.value.hint
    assert not (tmp_path / "o").exists()


def test_dask_engine_and_partitions_write_the_same_folder(exported, tmp_path) -> None:
    distributed = pytest.importorskip("distributed", reason="the dask extra")
    from export_source import tree_bytes

    from m3leo_cli.config import load_settings
    from m3leo_cli.dist.engine import open_engine

    plan, whole, _ = exported
    opts = {"shard_size": 2, "command": ("m3leo", "export")}
    for i in (1, 0):  # the job without the first shard first: the card comes with the last
        run_export(plan, ExportOptions("hf", tmp_path / "parts", num_shards=2, shard_index=i,
                                       **opts))  # fmt: skip
    assert tree_bytes(tmp_path / "parts") == tree_bytes(whole)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as lc:
        settings = load_settings(
            {"data_dir": tmp_path / "data", "engine": "dask", "scheduler": lc.scheduler_address}
        )
        with open_engine(settings) as pool:
            res = run_export(plan, ExportOptions("hf", tmp_path / "dask", **opts),
                             settings=settings, pool=pool)  # fmt: skip
    assert res.complete and tree_bytes(tmp_path / "dask") == tree_bytes(whole)
