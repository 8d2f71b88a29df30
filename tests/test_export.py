"""Each export format reads back with its own framework's reader, values equal to the sources."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from export_source import LAYERS, plan_for, read_webdataset, shared_source, source_array

from m3leo_cli.errors import UnknownFormatError
from m3leo_cli.export import EXPORTERS, ExportOptions, get_exporter, run_export
from m3leo_cli.export.outputs import sha256_file


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


def _export(source, out: Path, fmt: str, **kw):
    plan = plan_for(source)
    opts = ExportOptions(fmt, out, shard_size=kw.pop("shard_size", 3), workers=2, **kw)
    return plan, run_export(plan, opts)


def _check_metadata(out: Path, plan, fmt: str) -> dict:
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == fmt
    assert [lay["name"] for lay in meta["layers"]] == [lay.name for lay in LAYERS]
    assert meta["counts"]["samples"] == len(plan.samples)
    assert meta["counts"]["skipped_missing_layer"] == {"gssic": len(plan.skipped["gssic"])}
    assert [s["tile_id"] for s in meta["samples"]] == [s.tile_id for s in plan.samples]
    for rel, info in meta["files"].items():
        assert sha256_file(out / rel) == info["sha256"]
        assert (out / rel).stat().st_size == info["size"]
    srcs = meta["provenance"]["sources"]
    assert len(srcs) == 3 * len(plan.samples)
    assert all(len(s["checksum"]) == 64 for s in srcs)
    assert meta["provenance"]["edition"] == "miniset"
    assert meta["provenance"]["m3leo_version"]
    assert not list(out.rglob("*.part"))
    if fmt != "geotiff":
        wc = next(lay for lay in meta["layers"] if lay["name"] == "esaworldcover-2020")
        assert wc["nodata"] == 0 and wc["bands"] == ["Map"] and wc["dtype"] == "uint8"
        first = meta["samples"][0]
        assert first["crs"] == "EPSG:4326" and len(first["bounds"]) == 4
        assert first["layers"]["s1grd-2020"]["shape"][0] == 16
        assert "nodata_pixels" in first["layers"]["esaworldcover-2020"]
    return meta


def test_registry_lists_the_formats() -> None:
    assert list(EXPORTERS)[:5] == ["npz", "webdataset", "parquet", "geotiff", "zarr"]
    with pytest.raises(UnknownFormatError) as exc:
        get_exporter("hdf5")
    assert exc.value.hint == "known formats: " + ", ".join(EXPORTERS)


def test_join_skips_tiles_lacking_a_layer(source) -> None:
    repo = source.repo("miniset", "europe")
    plan = plan_for(source)
    lacking = set(repo.missing("gssic"))
    assert lacking and sorted(lacking) == plan.skipped["gssic"]
    assert {s.tile_id for s in plan.samples} == set(repo.tiles) - lacking
    kept = plan_for(source, allow_missing=True)
    assert len(kept.samples) == len(repo.tiles)
    assert {s.tile_id for s in kept.samples if s.missing == ("gssic",)} == lacking


def test_npz_reads_back_with_numpy(source, tmp_path: Path) -> None:
    plan, summary = _export(source, tmp_path / "o", "npz")
    assert summary.complete and summary.written == len(plan.samples) and not summary.failures
    files = sorted((tmp_path / "o").rglob("*.npz"))
    assert len(files) == len(plan.samples)
    for s in plan.samples:
        path = tmp_path / "o" / s.split / f"{s.tile_id}.npz"
        with np.load(path) as z:
            for lay in LAYERS:
                src = source_array(plan, s.tile_id, lay.name)
                assert z[lay.name].dtype == src.dtype
                np.testing.assert_array_equal(z[lay.name], src)
                assert len(z[lay.name + ".bands"]) == src.shape[0]
            info = json.loads(str(z["__sample__"]))
            assert info["tile_id"] == s.tile_id and info["split"] == s.split
    _check_metadata(tmp_path / "o", plan, "npz")


def test_webdataset_reads_back_with_webdataset(source, tmp_path: Path) -> None:
    plan, summary = _export(source, tmp_path / "o", "webdataset", shard_size=2)
    assert summary.complete
    seen = 0
    for split in plan.splits:
        urls = sorted(str(p) for p in (tmp_path / "o" / split).glob(f"{split}-*.tar"))
        expected = [s for s in plan.samples if s.split == split]
        assert len(urls) == -(-len(expected) // 2)
        got = read_webdataset(urls)
        assert [g["__key__"] for g in got] == [s.tile_id for s in expected]
        for g in got:
            for lay in LAYERS:
                np.testing.assert_array_equal(
                    g[f"{lay.name}.npy"], source_array(plan, g["__key__"], lay.name)
                )
            assert g["json"]["split"] == split
            assert g["json"]["layers"]["s1grd-2020"]["bands"][0] == "winter_vvasc"
            seen += 1
    assert seen == len(plan.samples)
    _check_metadata(tmp_path / "o", plan, "webdataset")


def _parquet_array(cell, field) -> np.ndarray:
    """The recipe docs/export.md gives: raw little-endian bytes in the field's dtype."""
    value = cell.as_py()
    dtype = np.dtype(field.metadata[b"dtype"].decode()).newbyteorder("<")
    return np.frombuffer(value["data"], dtype=dtype).reshape(value["shape"])


def test_parquet_reads_back_with_pyarrow(source, tmp_path: Path) -> None:
    plan, summary = _export(source, tmp_path / "o", "parquet")
    assert summary.complete
    table = pq.read_table(tmp_path / "o" / "train")
    train = [s for s in plan.samples if s.split == "train"]
    assert table.column("tile_id").to_pylist() == [s.tile_id for s in train]
    field = table.schema.field("s1grd-2020")
    assert json.loads(field.metadata[b"bands"])[0] == "winter_vvasc"
    assert field.metadata[b"role"] == b"input"
    assert table.schema.field("esaworldcover-2020").metadata[b"role"] == b"label"
    for i, s in enumerate(train):
        assert table.column("split")[i].as_py() == "train"
        assert table.column("bounds")[i].as_py() == list(s.bounds)
        for lay in LAYERS:
            src = source_array(plan, s.tile_id, lay.name)
            got = _parquet_array(table.column(lay.name)[i], table.schema.field(lay.name))
            assert got.dtype == src.dtype  # stored type, not widened
            np.testing.assert_array_equal(got, src)
    total = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "o").rglob("*.parquet"))
    assert total == len(plan.samples)
    _check_metadata(tmp_path / "o", plan, "parquet")
    if importlib.util.find_spec("datasets") is not None:  # optional: the HF Parquet loader
        import datasets

        ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "o" / "train"))["train"]
        assert ds["tile_id"] == [s.tile_id for s in train]
        cell = ds[0]["gssic"]
        got = np.frombuffer(cell["data"], dtype="<f4").reshape(cell["shape"])
        np.testing.assert_array_equal(got, source_array(plan, train[0].tile_id, "gssic"))


def test_geotiff_copies_the_original_files(source, tmp_path: Path) -> None:
    plan, summary = _export(source, tmp_path / "o", "geotiff")
    assert summary.complete
    for s in plan.samples:
        for lay in LAYERS:
            src = s.files[lay.name].path
            out = tmp_path / "o" / s.split / lay.name / src.name
            assert out.read_bytes() == src.read_bytes()
            assert os.stat(out).st_ino != os.stat(src).st_ino  # a copy (issue 27): never linked
    meta = _check_metadata(tmp_path / "o", plan, "geotiff")
    assert meta["files_are"] == "copies"
    assert len(meta["files"]) == 3 * len(plan.samples)


def test_allow_missing_records_absent_layers(source, tmp_path: Path) -> None:
    plan = plan_for(source, allow_missing=True)
    lacking = [s for s in plan.samples if s.missing]
    assert lacking
    run_export(plan, ExportOptions("parquet", tmp_path / "p", shard_size=100))
    shards = sorted(str(p) for p in (tmp_path / "p").rglob("*.parquet"))
    table = pq.read_table(shards, columns=["tile_id", "missing", "gssic", "s1grd-2020"])
    rows = {r["tile_id"]: r for r in table.to_pylist()}
    for s in lacking:
        assert rows[s.tile_id]["gssic"] is None and rows[s.tile_id]["missing"] == ["gssic"]
        assert rows[s.tile_id]["s1grd-2020"] is not None
    run_export(plan, ExportOptions("npz", tmp_path / "n"))
    with np.load(tmp_path / "n" / lacking[0].split / f"{lacking[0].tile_id}.npz") as z:
        assert "gssic" not in z.files and "s1grd-2020" in z.files
        assert json.loads(str(z["__sample__"]))["missing"] == ["gssic"]
