"""`m3leo unpack`: local shard files into the store layout or a folder."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clirun import run

from m3leo_cli import spec
from m3leo_cli.config import load_settings
from m3leo_cli.full.unpacked import recorded_checksums
from m3leo_cli.store import integrity
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source

REGION = "europe"
DK = "s1grd-2020"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    cfg = SynthConfig(regions=(REGION,), editions=("miniset", "full"), tiles=8, datakinds=(DK,),
                      chip_px=16, native_shape=(4, 5))  # fmt: skip
    return write_source(tmp_path_factory.mktemp("src"), cfg)


def _shards(source: SourceInfo) -> list[Path]:
    full = source.repo("full", REGION)
    return [full.root / p for p in sorted(full.shards)]


def test_unpack_into_the_store_matches_the_miniset(source, capsys, data_dir: Path) -> None:
    shards = _shards(source)
    res = run(capsys, "unpack", *map(str, shards), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    full, mini = source.repo("full", REGION), source.repo("miniset", REGION)
    assert doc["files"] == len(full.coverage[DK])
    recorded = recorded_checksums(load_settings(), "full", REGION)
    for t in full.coverage[DK]:
        rel = full.tile_path(DK, t)
        assert (data_dir / "full" / REGION / rel).read_bytes() == (mini.root / rel).read_bytes()
        assert rel in recorded
        # issue 27: what every later read checks with one stat (tiles.integrity)
        got = integrity.lookup(integrity.place_of(data_dir / "full" / REGION / rel))
        assert got is not None and got.sha256 is not None and got.sha256.hex() == recorded[rel][1]


def test_unpack_to_a_folder_with_explicit_region(source, capsys, tmp_path: Path) -> None:
    shard = _shards(source)[0]
    res = run(capsys, "unpack", str(shard), "--region", REGION, "--out", str(tmp_path / "o"))
    assert res.code == 0, res.err
    assert "unpacked" in res.err
    assert list((tmp_path / "o" / spec.get_region(REGION).partition / DK).glob("*.tif"))


def test_unpack_wrong_region_refuses_rows(source, capsys, tmp_path: Path) -> None:
    shard = _shards(source)[0]
    res = run(capsys, "unpack", str(shard), "--region", "conus", "--out", str(tmp_path / "o"))
    assert res.code == 1
    assert "Error:" in res.err and "refused" in res.err and "hint:" in res.err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.tif"))


def test_unpack_hostile_path_is_refused(capsys, tmp_path: Path, data_dir: Path) -> None:
    part = spec.get_region(REGION).partition
    base = f"{REGION}/{part}/{DK}"
    rows = {"path": [f"{base}/../../../../x.tif", f"{base}/{'1' * 13}.tif"],
            "ds": [DK, DK], "content": [b"evil", b"good"]}  # fmt: skip
    shard = tmp_path / "train_0002540be400.zstd.parquet"
    pq.write_table(pa.table(rows), shard, compression="zstd")
    res = run(capsys, "unpack", str(shard))
    assert res.code == 1
    assert "1 row(s) refused" in res.err and "hint:" in res.err
    assert (data_dir / "full" / REGION / part / DK / f"{'1' * 13}.tif").read_bytes() == b"good"
    assert not list(data_dir.parent.rglob("x.tif"))


def test_unpack_truncated_shard(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "cut.zstd.parquet"
    bad.write_bytes(b"PAR1" + b"\0" * 50)
    res = run(capsys, "unpack", str(bad))
    assert res.code == 1
    assert "Error: shard cut.zstd.parquet is truncated or not Parquet" in res.err
    assert "hint:" in res.err


def test_unpack_missing_file_and_no_args(capsys, tmp_path: Path) -> None:
    res = run(capsys, "unpack", str(tmp_path / "nope.parquet"))
    assert res.code == 2 and "no such shard file" in res.err
    res = run(capsys, "unpack")
    assert res.code == 2


def test_the_same_shard_twice_is_unpacked_and_counted_once(
    source, capsys, tmp_path: Path, data_dir: Path
) -> None:
    """Issue 27 finding 11: `unpack S S` reported "unpacked 8 files" for 4."""
    shard = _shards(source)[0]
    link = tmp_path / "again.zstd.parquet"
    link.symlink_to(shard)  # the same file under another name counts as the same shard too
    res = run(capsys, "unpack", str(shard), str(shard), str(link), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert len(doc["shards"]) == 1
    assert doc["files"] == doc["shards"][0]["files"] > 0
    assert doc["duplicates"] == [str(shard), str(link)]
    res = run(capsys, "unpack", str(shard), str(shard))
    assert res.code == 0, res.err
    assert f"warning: {shard} is given more than once (the same file): unpacked once" in res.err
    n = len(list((data_dir / "full" / REGION).rglob("*.tif")))
    assert f"unpacked {n} files" in res.err
