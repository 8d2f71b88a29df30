"""``--format litdata``: chunks and ``index.json`` that ``litdata.StreamingDataset`` streams,
from a local folder and from an ``s3://`` prefix on moto's S3-compatible server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from export_source import LAYERS, export_once, plan_for, shared_source, source_array, tree_bytes

from m3leo_cli.errors import FormatDependencyError
from m3leo_cli.export import ExportOptions, run_export
from m3leo_cli.export.outputs import sha256_file
from m3leo_cli.tiles.reader import read_tile

litdata = pytest.importorskip("litdata", reason="the litdata extra")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory: pytest.TempPathFactory):
    return export_once("litdata", source, tmp_path_factory)


def _items(where: str, **kw) -> list[dict]:
    ds = litdata.StreamingDataset(where, **kw)
    return [ds[i] for i in range(len(ds))]


def _check_items(plan, split: str, items: list[dict]) -> None:
    """Every value equal to read_tile's (the uint8 label untouched), ids and bboxes right."""
    samples = [s for s in plan.samples if s.split == split]
    assert [it["tile_id"] for it in items] == [s.tile_id for s in samples]
    for s, it in zip(samples, items, strict=True):
        assert it["split"] == split and it["region"] == "europe"
        assert it["crs"] == "EPSG:4326" and it["missing"] == ""
        for lay in LAYERS:
            want = source_array(plan, s.tile_id, lay.name)
            got = it[lay.name]
            assert isinstance(got, np.ndarray) and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
        tile = read_tile(s.files["s1grd-2020"].path, "s1grd-2020")
        assert it["bbox"].dtype == np.float64 and tuple(it["bbox"]) == tuple(tile.bounds)


def test_streaming_dataset_reads_every_value_back(exported) -> None:
    plan, out, summary = exported
    assert summary.complete and summary.written == len(plan.samples)
    for split in plan.splits:
        _check_items(plan, split, _items(str(out / split)))
    train = litdata.StreamingDataset(str(out / "train"))  # iterating gives the same items
    assert [it["tile_id"] for it in train] == [s.tile_id for s in plan.samples
                                               if s.split == "train"]  # fmt: skip


def test_index_and_metadata_describe_the_chunks(exported) -> None:
    plan, out, _ = exported
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == "litdata"
    assert [m["tile_id"] for m in meta["samples"]] == [s.tile_id for s in plan.samples]
    for split in plan.splits:
        index = json.loads((out / split / "index.json").read_text())
        chunks = sorted(p.name for p in (out / split).glob("*.bin"))
        assert [c["filename"] for c in index["chunks"]] == chunks
        assert sum(c["chunk_size"] for c in index["chunks"]) == sum(
            s.split == split for s in plan.samples
        )
        for c in index["chunks"]:
            assert c["chunk_bytes"] == (out / split / c["filename"]).stat().st_size
        assert len(index["updated_at"]) == 16  # a digest of the chunks, not a time
        assert f"{split}/index.json" in meta["files"]
    for rel, info in meta["files"].items():
        assert sha256_file(out / rel) == info["sha256"]


def test_partitioned_jobs_and_a_rerun_give_the_same_bytes(exported, tmp_path) -> None:
    plan, whole, _ = exported
    parts = tmp_path / "parts"
    for i in (1, 0):
        s = run_export(plan, ExportOptions("litdata", parts, shard_size=2, num_shards=2,
                                           shard_index=i, command=("m3leo", "export")))  # fmt: skip
    assert s.complete and tree_bytes(parts) == tree_bytes(whole)
    opts = ExportOptions("litdata", parts, shard_size=2, command=("m3leo", "export"))
    assert run_export(plan, opts).units_written == 0
    assert tree_bytes(parts) == tree_bytes(whole)


def test_allow_missing_leaves_an_empty_array(source, tmp_path) -> None:
    plan = plan_for(source, allow_missing=True)
    gap = next(s for s in plan.samples if s.missing)
    out = tmp_path / "o"
    run_export(plan, ExportOptions("litdata", out, shard_size=4))
    it = next(i for i in _items(str(out / gap.split)) if i["tile_id"] == gap.tile_id)
    assert it["missing"] == "gssic" and it["gssic"].shape == (0, 0, 0)
    assert it["gssic"].dtype == np.float32
    np.testing.assert_array_equal(it["s1grd-2020"], source_array(plan, gap.tile_id, "s1grd-2020"))


def test_missing_litdata_is_one_error_naming_the_extra(source, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "litdata", None)  # as if not installed
    with pytest.raises(FormatDependencyError) as exc:
        run_export(plan_for(source), ExportOptions("litdata", tmp_path / "o"))
    assert exc.value.exit_code == 2 and "[litdata]" in exc.value.hint
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ s3:// (moto's server)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, object]]:
    pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    pytest.importorskip("s3fs", reason="s3fs is in the dev extra")
    from s3kit import empty_bucket, moto_endpoint

    with moto_endpoint() as url:
        yield url, empty_bucket(url, "m3leo-litdata", monkeypatch)


def test_streaming_dataset_reads_the_export_from_s3(source, exported, s3, tmp_path,
                                                    monkeypatch) -> None:  # fmt: skip
    from m3leo_cli.config import load_settings

    plan, local, _ = exported
    endpoint, bucket = s3
    url = "s3://m3leo-litdata/ds"
    settings = load_settings({"data_dir": tmp_path / "data"})
    opts = ExportOptions("litdata", url, shard_size=2, workers=2, command=("m3leo", "export"))
    assert run_export(plan, opts, settings=settings).complete
    objects = {p.split("ds/", 1)[1]: bucket.cat_file(p)  # type: ignore[attr-defined]
               for p in sorted(bucket.find("m3leo-litdata/ds"))}  # type: ignore[attr-defined]  # fmt: skip
    assert objects == tree_bytes(local)
    # litdata fetches chunks with obstore when it is installed, and builds its client without
    # object_store's allow_http, so an http:// endpoint (moto's here) is refused there ("builder
    # error"); its boto3 path, which it takes anyway for index.json, reads the same objects
    import litdata.streaming.downloader as downloader

    monkeypatch.setattr(downloader, "_OBSTORE_AVAILABLE", False)
    for split in plan.splits:
        items = _items(f"{url}/{split}", cache_dir=str(tmp_path / "cache" / split),
                       storage_options={"endpoint_url": endpoint})  # fmt: skip
        _check_items(plan, split, items)
