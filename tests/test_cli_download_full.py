"""`m3leo download/verify/clean` on the full edition: --fetch, --keep-shards, the per-shard
dry-run plan, verify against the recorded checksums (and --repair), clean of the shard cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import run

from m3leo_cli.server import HubServer
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source

REGION = "europe"
DK = "s1grd-2020"
SEL = ("--edition", "full", "--region", REGION, "--modality", DK)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    cfg = SynthConfig(regions=(REGION,), editions=("full",), tiles=12, datakinds=(DK,),
                      tiles_per_shard=6, rows_per_row_group=1, chip_px=32)  # fmt: skip
    return write_source(tmp_path_factory.mktemp("full-src"), cfg)


@pytest.fixture
def hub(source: SourceInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer(source.root) as srv:
        monkeypatch.setenv("M3LEO_ENDPOINT", srv.url)
        yield srv


def _tiles(source: SourceInfo) -> list[str]:
    return list(source.repo("full", REGION).coverage[DK])


def _local(data_dir: Path, source: SourceInfo, tile: str) -> Path:
    return data_dir / "full" / REGION / source.repo("full", REGION).tile_path(DK, tile)


def test_dry_run_lists_the_plan_of_each_shard(capsys, hub, source, data_dir) -> None:
    full = source.repo("full", REGION)
    tile = _tiles(source)[0]
    shard = full.shard_for(DK, tile)
    assert shard is not None
    res = run(capsys, "download", *SEL, "--tiles", tile, "--fetch", "ranges", "--dry-run")
    assert res.code == 0, res.err
    assert "shards: 1 (0 whole, 1 by ranges, 0 already unpacked)" in res.err
    line = next(ln for ln in res.err.splitlines() if shard.path in ln)
    assert "ranges, 1 row group [" in line and "1 tiles" in line and "request" in line
    res = run(capsys, "download", *SEL, "--fetch", "whole", "--dry-run", "--json")
    plan = json.loads(res.out)
    assert {s["mode"] for s in plan["shards"]} == {"whole"}
    res = run(capsys, "download", *SEL, "--fetch", "whole", "--dry-run")
    assert f"{REGION}/{shard.path}: whole shard (" in res.err
    assert not (data_dir / "full").exists()  # a plan fetches no tile


def test_bad_fetch_value_is_a_usage_error_naming_the_choices(capsys, hub) -> None:
    res = run(capsys, "download", *SEL, "--fetch", "sometimes")
    assert res.code == 2
    assert "Error: unknown fetch mode 'sometimes'" in res.err
    assert "hint: use --fetch auto, whole or ranges" in res.err


def test_keep_shards_then_clean_the_shard_cache(capsys, hub, source, data_dir) -> None:
    tile = _tiles(source)[0]
    shard = source.repo("full", REGION).shard_for(DK, tile)
    assert shard is not None
    res = run(capsys, "download", *SEL, "--tiles", tile, "--fetch", "whole", "--keep-shards")
    assert res.code == 0, res.err
    cache = data_dir / ".m3leo" / "shards"
    kept = cache / REGION / shard.path
    assert kept.stat().st_size == shard.size
    stale = cache / REGION / (shard.path.rsplit(".", 2)[0] + "x.zstd.parquet.part")
    stale.write_bytes(b"x" * 1000)  # an interrupted whole-shard download
    res = run(capsys, "clean", "--dry-run")
    assert res.code == 0 and f"would remove {stale}" in res.err
    assert "would remove 1 .part files: would free 1.0 kB" in res.err
    assert stale.exists() and kept.exists()
    res = run(capsys, "clean", "--json")
    doc = json.loads(res.out)
    assert (doc["parts"], doc["shards"], doc["bytes"]) == (1, 0, 1000)
    assert not stale.exists() and kept.exists()  # whole shards stay without --shards
    res = run(capsys, "clean", "--shards", "--dry-run", "--json")
    assert json.loads(res.out)["removed"] == [str(kept)] and kept.exists()
    res = run(capsys, "clean", "--shards")
    assert res.code == 0 and "removed 0 .part files and 1 cached shards" in res.err
    assert not kept.exists()
    assert _local(data_dir, source, tile).is_file()  # unpacked tiles are never touched
    res = run(capsys, "clean", "--edition", "miniset", "--shards", "--json")
    assert json.loads(res.out)["removed"] == []


def test_verify_checks_recorded_checksums_and_repairs(capsys, hub, source, data_dir) -> None:
    tiles = _tiles(source)[:4]
    args = (*SEL, "--tiles", ",".join(tiles))
    assert run(capsys, "download", *args, "--fetch", "ranges").code == 0
    good = {t: _local(data_dir, source, t).read_bytes() for t in tiles}
    res = run(capsys, "verify", *args, "--json")
    assert res.code == 0, res.err
    rep = json.loads(res.out)
    assert rep["ok"] == rep["checked"] and not rep["unchecked"] and rep["checked"] >= 4
    bad = _local(data_dir, source, tiles[1])
    raw = bytearray(good[tiles[1]])
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))  # same size: only the recorded sha256 can tell
    res = run(capsys, "verify", *args)
    assert res.code == 1 and "1 corrupt" in res.err and f"corrupt full/{REGION}/" in res.err
    assert "hint: run the same command with --repair" in res.err
    hub.clear_log()
    res = run(capsys, "verify", *args, "--repair")
    assert res.code == 0, res.err
    assert "repair: downloaded 1, failed 0" in res.err
    assert bad.read_bytes() == good[tiles[1]]
    fetched = [r for r in hub.log if r.method == "GET" and (r.repo_path or "").endswith(".parquet")]
    assert fetched  # re-fetched from its shard, the other tiles left alone
    assert all(_local(data_dir, source, t).read_bytes() == good[t] for t in tiles)
    assert run(capsys, "verify", *args).code == 0
    # a tile with no record (put there by other means) is "unchecked", counted, not an error
    for p in (data_dir / ".m3leo" / "unpacked").rglob("*.json"):
        p.unlink()
    res = run(capsys, "verify", *args)
    assert res.code == 0, res.err
    assert "4 unchecked: present, but with no size and sha256 recorded" in res.err


@pytest.fixture(scope="module")
def gsource(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    """Both editions, gssic only, with the synthetic default partial coverage (0.8)."""
    cfg = SynthConfig(regions=(REGION,), tiles=12, datakinds=("gssic",), tiles_per_shard=4,
                      rows_per_row_group=1, chip_px=32)  # fmt: skip
    return write_source(tmp_path_factory.mktemp("gssic-src"), cfg)


def test_tiles_a_datakind_does_not_publish_are_counted_not_failed(
    capsys, gsource, data_dir, monkeypatch
) -> None:
    full, mini = gsource.repo("full", REGION), gsource.repo("miniset", REGION)
    lacking = full.missing("gssic")
    assert lacking and full.coverage["gssic"], "partial coverage expected"
    sel = ("--region", REGION, "--modality", "gssic")  # the full edition is the default
    with HubServer(gsource.root) as srv:
        monkeypatch.setenv("M3LEO_ENDPOINT", srv.url)
        res = run(capsys, "download", *sel)
        assert res.code == 0, res.err
        assert f"{len(lacking)} tiles not published in this datakind's shards" in res.err
        assert "failed 0" in res.err
        for t in full.coverage["gssic"]:
            rel = full.tile_path("gssic", t)
            assert (data_dir / "full" / REGION / rel).read_bytes() == (mini.root / rel).read_bytes()
        for t in lacking:
            assert not (data_dir / "full" / REGION / full.tile_path("gssic", t)).exists()
        # a re-run transfers nothing and asks no shard for the tiles it does not hold
        srv.clear_log()
        res = run(capsys, "download", *sel, "--json")
        assert res.code == 0, res.err
        doc = json.loads(res.out)
        assert (doc["absent"], doc["bytes"], doc["downloaded"], doc["failed"]) == (
            len(lacking), 0, 0, 0,
        )  # fmt: skip
        assert not [r for r in srv.log if (r.repo_path or "").endswith(".parquet")]
        res = run(capsys, "download", *sel, "--dry-run", "--json")
        plan = json.loads(res.out)
        assert (plan["absent"], plan["to_fetch_files"], plan["to_fetch_bytes"]) == (
            len(lacking), 0, 0,
        )  # fmt: skip
        res = run(capsys, "download", *sel, "--dry-run")
        assert f"{len(lacking)} tiles not published" in res.err
    # verify works from the store alone: not published is not missing
    res = run(capsys, "verify", "-m", "gssic", "--region", REGION)
    assert res.code == 0, res.err
    assert f"{len(lacking)} tiles not published in this datakind's shards" in res.err
    assert "0 missing, 0 corrupt" in res.err and "missing full/" not in res.err
    res = run(capsys, "verify", "-m", "gssic", "--region", REGION, "--json")
    rep = json.loads(res.out)
    assert res.code == 0 and rep["missing"] == [] and rep["problems"] == 0
    assert sorted(rep["unpublished"]) == sorted(
        f"full/{REGION}/{full.tile_path('gssic', t)}" for t in lacking
    )
    # issue 12 item 5: export says the same, never "not downloaded (`m3leo download` ...)"
    out = data_dir.parent / "exp"
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *sel)
    assert res.code == 0, res.err
    assert f"{len(lacking)} gssic tiles not published in this datakind's shards" in res.err
    assert "not downloaded" not in res.err and "m3leo download" not in res.err, res.err
    assert "--allow-missing" not in res.err  # it would keep none of them: no layer at all
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *sel, "--json")
    doc = json.loads(res.out)
    assert doc["not_published"] == {"gssic": len(lacking)} and doc["not_downloaded"] == {}
    # and `m3leo tiles` does not claim a datakind its shard does not hold
    res = run(capsys, "tiles", *sel, "--json")
    listed = {t["tile_id"]: t for t in json.loads(res.out)["tiles"]}
    for t in lacking:
        assert listed[t]["not_published"] == ["gssic"] and listed[t]["datakinds"] == []
    assert all(listed[t]["local"] == ["gssic"] for t in full.coverage["gssic"])
    res = run(capsys, "tiles", *sel)
    assert f"{len(lacking)} tiles not published in this datakind's shards" in res.err
    res = run(capsys, "stats", *sel)
    assert "not published in this datakind's shards" in res.err and "m3leo tiles" in res.err
