"""``--format tfrecord``: tf.train.Example shards written without TensorFlow, read back by the
``tfrecord`` package's reader."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from export_source import LAYERS, export_once, plan_for, shared_source, source_array, tree_bytes

from m3leo_cli.errors import FormatDependencyError
from m3leo_cli.export import ExportOptions, run_export
from m3leo_cli.export.outputs import sha256_file
from m3leo_cli.tiles.reader import read_tile

reader = pytest.importorskip("tfrecord.reader", reason="the tfrecord extra")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory: pytest.TempPathFactory):
    return export_once("tfrecord", source, tmp_path_factory)


def _records(out: Path, split: str) -> list[dict]:
    recs: list[dict] = []
    for shard in sorted((out / split).glob("*.tfrecord")):
        recs.extend(reader.tfrecord_loader(str(shard), None))
    return recs


def test_every_value_reads_back_through_the_tfrecord_reader(exported) -> None:
    plan, out, summary = exported
    assert summary.complete and summary.written == len(plan.samples)
    for split in plan.splits:
        samples = [s for s in plan.samples if s.split == split]
        recs = _records(out, split)
        assert [r["tile_id"].decode() for r in recs] == [s.tile_id for s in samples]
        for s, r in zip(samples, recs, strict=True):
            assert r["split"] == split.encode() and r["region"] == b"europe"
            assert r["crs"] == b"EPSG:4326" and r["missing"] == b""
            for lay in LAYERS:
                want = source_array(plan, s.tile_id, lay.name)
                shape = tuple(r[f"{lay.name}/shape"])
                dtype = np.dtype(r[f"{lay.name}/dtype"].decode()).newbyteorder("<")
                got = np.frombuffer(r[f"{lay.name}/data"], dtype).reshape(shape)
                assert got.dtype == want.dtype and r[f"{lay.name}/present"].item() == 1
                np.testing.assert_array_equal(got, want)  # the uint8 label untouched
            tile = read_tile(s.files["s1grd-2020"].path, "s1grd-2020")
            assert tuple(np.frombuffer(r["bbox_f64"], "<f8")) == tuple(tile.bounds)
            np.testing.assert_allclose(r["bbox"], tile.bounds, rtol=1e-6)


def test_the_feature_spec_lists_every_feature_of_every_record(exported) -> None:
    plan, out, _ = exported
    for split in plan.splits:
        spec = json.loads((out / split / "features.json").read_text())
        kinds = {"string": bytes, "int64": np.ndarray, "float32": np.ndarray}
        for r in _records(out, split):
            assert set(r) == set(spec["features"])
            for name, f in spec["features"].items():
                assert isinstance(r[name], kinds[f["dtype"]]), name
                if f["shape"]:
                    assert list(r[name].shape) == f["shape"], name
        wc = spec["layers"]["esaworldcover-2020"]
        assert wc == {"role": "label", "dtype": "uint8", "bands": ["Map"], "axes": "bands,y,x",
                      "byte_order": "little"}  # fmt: skip
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == "tfrecord"
    assert [m["tile_id"] for m in meta["samples"]] == [s.tile_id for s in plan.samples]
    assert {f"{sp}/features.json" for sp in plan.splits} <= set(meta["files"])
    for rel, info in meta["files"].items():
        assert sha256_file(out / rel) == info["sha256"]


def test_allow_missing_marks_absent_layers(source, tmp_path) -> None:
    plan = plan_for(source, allow_missing=True)
    gap = next(s for s in plan.samples if s.missing)
    out = tmp_path / "o"
    run_export(plan, ExportOptions("tfrecord", out, shard_size=4))
    r = next(r for r in _records(out, gap.split) if r["tile_id"] == gap.tile_id.encode())
    assert r["missing"] == b"gssic" and r["gssic/present"].item() == 0
    assert r["gssic/data"] == b"" and list(r["gssic/shape"]) == [0, 0, 0]
    np.testing.assert_array_equal(
        np.frombuffer(r["s1grd-2020/data"], "<u2").reshape(tuple(r["s1grd-2020/shape"])),
        source_array(plan, gap.tile_id, "s1grd-2020"),
    )


def test_partitioned_jobs_and_a_rerun_give_the_same_shards(exported, tmp_path) -> None:
    plan, whole, _ = exported
    parts = tmp_path / "parts"
    for i in (1, 0):
        s = run_export(plan, ExportOptions("tfrecord", parts, shard_size=2, num_shards=2,
                                           shard_index=i, command=("m3leo", "export")))  # fmt: skip
    assert s.complete and tree_bytes(parts) == tree_bytes(whole)
    opts = ExportOptions("tfrecord", parts, shard_size=2, command=("m3leo", "export"))
    assert run_export(plan, opts).units_written == 0


def test_missing_tfrecord_is_one_error_naming_the_extra(source, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tfrecord", None)  # as if not installed
    with pytest.raises(FormatDependencyError) as exc:
        run_export(plan_for(source), ExportOptions("tfrecord", tmp_path / "o"))
    assert exc.value.exit_code == 2 and "[tfrecord]" in exc.value.hint
    assert not (tmp_path / "o").exists()
