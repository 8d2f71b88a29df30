"""Full-edition downloads against the loopback Hub server: layout, bytes fetched, faults."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from m3leo_cli.config import Settings, load_settings
from m3leo_cli.errors import ShardError
from m3leo_cli.fetch.runner import DownloadSummary
from m3leo_cli.full.download import FullDownloadPlan
from m3leo_cli.full.unpacked import recorded_checksums
from m3leo_cli.mirror.download import download
from m3leo_cli.selection import build_selection
from m3leo_cli.server import Faults, HubServer
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source

REGION = "europe"
DK = "s1grd-2020"
AUX = 2  # a first download also fetches the split CSV and the _parquet.csv


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    cfg = SynthConfig(regions=(REGION,), tiles=20, datakinds=(DK, "gssic"), tiles_per_shard=8,
                      rows_per_row_group=1)  # fmt: skip
    return write_source(tmp_path_factory.mktemp("src"), cfg)


@pytest.fixture(scope="module")
def server(source: SourceInfo) -> Iterator[HubServer]:
    with HubServer(source.root) as srv:
        yield srv


@pytest.fixture
def hub(server: HubServer) -> Iterator[HubServer]:
    server.faults = Faults()
    server.clear_log()
    yield server
    server.faults = Faults()


def _settings(tmp_path: Path, hub: HubServer) -> Settings:
    return load_settings({"data_dir": tmp_path / "data", "endpoint": hub.url, "max_retries": 3})


def _get(settings: Settings, **sel: object) -> DownloadSummary | FullDownloadPlan:
    opts = {k: v for k, v in sel.items() if k in ("fetch", "keep_shards", "dry_run")}
    sel = {k: v for k, v in sel.items() if k not in opts}
    selection = build_selection(edition="full", regions=[REGION], **sel)  # type: ignore[arg-type]
    return download(settings, selection, workers=2, **opts)  # type: ignore[arg-type]


def _shard_bytes(hub: HubServer, shard: str) -> int:
    return sum(r.bytes_sent for r in hub.log if r.repo_path == shard and r.method == "GET")


def _same_as_miniset(source: SourceInfo, settings: Settings, tiles: list[str], dk: str = DK):
    full, mini = source.repo("full", REGION), source.repo("miniset", REGION)
    recorded = recorded_checksums(settings, "full", REGION)
    for t in tiles:
        rel = full.tile_path(dk, t)
        local = settings.data_dir / "full" / REGION / rel
        data = local.read_bytes()
        assert data == (mini.root / rel).read_bytes(), rel
        assert recorded[rel] == (len(data), hashlib.sha256(data).hexdigest())


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_region_modality_split_is_byte_identical_to_the_miniset(source, hub, tmp_path) -> None:
    s = _settings(tmp_path, hub)
    res = _get(s, modalities=["s1grd"], splits=["train"])
    assert isinstance(res, DownloadSummary) and res.failed == 0, res.failures
    full = source.repo("full", REGION)
    train = [t for t in full.coverage[DK] if full.split_of(t) == "train"]
    assert res.downloaded == len(train) + AUX
    _same_as_miniset(source, s, train)
    region_dir = s.data_dir / "full" / REGION
    tiles = [f for f in _all_files(region_dir) if f.endswith(".tif")]
    assert tiles == sorted(full.tile_path(DK, t) for t in train)
    assert (region_dir / full.partition).is_dir()
    reg = region_dir.iterdir()
    assert any(p.name.endswith("_60-20-20.csv") for p in reg)
    assert not list((s.data_dir / ".m3leo" / "shards").rglob("*.parquet"))  # removed after unpack
    hub.clear_log()
    again = _get(s, modalities=["s1grd"], splits=["train"])
    assert isinstance(again, DownloadSummary) and again.bytes == 0 and again.downloaded == 0
    assert again.skipped >= len(train)
    assert not [r for r in hub.log if r.origin == "content"]


def test_one_tile_fetches_well_under_half_of_its_shard(source, hub, tmp_path) -> None:
    s = _settings(tmp_path, hub)
    full = source.repo("full", REGION)
    shard = max((i for i in full.shards.values() if i.datakind == DK), key=lambda i: i.size)
    tile, other = shard.tile_ids[2], shard.tile_ids[5]
    plan = _get(s, modalities=[DK], tiles=tile, dry_run=True)
    assert isinstance(plan, FullDownloadPlan)
    assert [(p["mode"], p["tiles"]) for p in plan.shards] == [("ranges", 1)]
    assert not (s.data_dir / "full" / REGION / full.partition).exists()
    hub.clear_log()
    res = _get(s, modalities=[DK], tiles=tile)
    assert isinstance(res, DownloadSummary) and res.failed == 0 and res.downloaded == 1 + AUX
    _same_as_miniset(source, s, [tile])
    sent = _shard_bytes(hub, shard.path)
    assert 0 < sent < 0.4 * shard.size
    # the footer and path chunks were cached by the dry run: the real run read no tail
    tail = f"bytes={shard.size - 1}"
    assert not [r for r in hub.log if r.range and r.range.endswith(str(shard.size - 1))], tail
    hub.clear_log()
    res2 = _get(s, modalities=[DK], tiles=other)
    assert isinstance(res2, DownloadSummary) and res2.downloaded == 1
    assert not [r for r in hub.log if r.range and r.range.endswith(str(shard.size - 1))]
    _same_as_miniset(source, s, [tile, other])


def test_server_ignoring_range_falls_back_to_the_whole_shard(source, hub, tmp_path) -> None:
    s = _settings(tmp_path, hub)
    hub.faults = Faults(ignore_range=True)
    tile = source.repo("full", REGION).coverage[DK][0]
    res = _get(s, modalities=[DK], tiles=tile)
    assert isinstance(res, DownloadSummary) and res.failed == 0 and res.downloaded == 1 + AUX
    _same_as_miniset(source, s, [tile])


def test_corrupt_shard_is_refetched_then_reported(source, hub, tmp_path) -> None:
    s = _settings(tmp_path, hub)
    full = source.repo("full", REGION)
    test_tiles = [t for t in full.coverage[DK] if full.split_of(t) == "test"]
    _get(s, modalities=[DK], splits=["test"], fetch="whole", dry_run=True)  # catalog first
    hub.faults = Faults(corrupt_first=1)
    res = _get(s, modalities=[DK], splits=["test"], fetch="whole")
    assert isinstance(res, DownloadSummary) and res.failed == 0
    _same_as_miniset(source, s, test_tiles)
    s2 = _settings(tmp_path / "again", hub)
    hub.faults = Faults()
    _get(s2, modalities=[DK], splits=["test"], fetch="whole", dry_run=True)
    hub.faults = Faults(corrupt_first=50)
    bad = _get(s2, modalities=[DK], splits=["test"], fetch="whole")
    assert isinstance(bad, DownloadSummary)
    tif = [(p, why) for p, why in bad.failures if p.endswith(".tif")]
    assert len(tif) == len(test_tiles) and all("sha256" in why for _, why in tif)
    assert bad.report_path is not None and bad.report_path.is_file()
    region_dir = s2.data_dir / "full" / REGION
    assert not [f for f in _all_files(region_dir) if f.endswith((".tif", ".part"))]


def test_dropped_connection_mid_shard_resumes(source, hub, tmp_path) -> None:
    s = _settings(tmp_path, hub)
    hub.faults = Faults(cut_after_bytes=3000, cut_first=1)
    res = _get(s, modalities=[DK], splits=["val"], fetch="whole", keep_shards=True)
    assert isinstance(res, DownloadSummary) and res.failed == 0
    full = source.repo("full", REGION)
    _same_as_miniset(source, s, [t for t in full.coverage[DK] if full.split_of(t) == "val"])
    assert any(r.range for r in hub.log if r.origin == "content")
    assert list((s.data_dir / ".m3leo" / "shards").rglob("*.zstd.parquet"))


def test_a_shard_left_by_an_unfinished_run_is_rehashed_not_trusted(source, hub, tmp_path) -> None:
    """Inside a run journal shards are not fsynced; one left behind (same size, wrong bytes:
    what a crash can leave) is re-hashed and fetched again, never unpacked."""
    s = _settings(tmp_path, hub)
    full = source.repo("full", REGION)
    val = [t for t in full.coverage[DK] if full.split_of(t) == "val"]
    shard = next(f for f in full.files.values() if f.kind == "shard" and f"/{DK}/val_" in f.path)
    left = s.data_dir / ".m3leo" / "shards" / REGION / shard.path
    left.parent.mkdir(parents=True)
    left.write_bytes(b"\0" * shard.size)
    res = _get(s, modalities=[DK], splits=["val"], fetch="whole")
    assert isinstance(res, DownloadSummary) and res.failed == 0, res.failures
    _same_as_miniset(source, s, val)
    assert _shard_bytes(hub, shard.path) == shard.size  # fetched again, whole
    assert not left.exists()


@pytest.mark.parametrize("fetch", ["whole", "ranges"])
def test_a_tile_the_shard_lacks_is_not_published_not_a_failure(source, hub, tmp_path, fetch):
    s = _settings(tmp_path, hub)
    full = source.repo("full", REGION)
    lacking = [t for t in full.missing("gssic") if full.shard_for("gssic", t) is not None]
    assert lacking, "the synthetic source should leave a gssic tile out of its shard"
    shard = full.shard_for("gssic", lacking[0])
    assert shard is not None
    tiles = ",".join([lacking[0], shard.tile_ids[0]])
    res = _get(s, modalities=["gssic"], tiles=tiles, fetch=fetch)
    assert isinstance(res, DownloadSummary) and res.downloaded == 1 + AUX, res.failures
    assert (res.failed, res.absent, res.to_dict()["absent"]) == (0, 1, 1)
    _same_as_miniset(source, s, [shard.tile_ids[0]], "gssic")
    # the shard index remembers: a re-run (any --fetch) and a dry run want nothing from it
    for again in ("whole", "ranges", "auto"):
        plan = _get(s, modalities=["gssic"], tiles=tiles, fetch=again, dry_run=True)
        assert isinstance(plan, FullDownloadPlan)
        assert (plan.absent, plan.to_fetch_files, plan.to_fetch_bytes) == (1, 0, 0)
        hub.clear_log()
        res = _get(s, modalities=["gssic"], tiles=tiles, fetch=again)
        assert isinstance(res, DownloadSummary)
        assert (res.downloaded, res.skipped, res.failed, res.absent, res.bytes) == (
            0,
            1 + AUX,
            0,
            1,
            0,
        )
        assert not [r for r in hub.log if r.repo_path == shard.path], again


def test_ranges_mode_reads_corrupt_bytes_then_falls_back(source, hub, tmp_path) -> None:
    s = _settings(tmp_path, hub)
    full = source.repo("full", REGION)
    shard = max((i for i in full.shards.values() if i.datakind == DK), key=lambda i: i.size)
    hub.faults = Faults(error_first=0, corrupt_first=0, cut_after_bytes=10, cut_first=1)
    res = _get(s, modalities=[DK], tiles=shard.tile_ids[1], fetch="ranges")
    assert isinstance(res, DownloadSummary) and res.failed == 0 and res.downloaded == 1 + AUX
    _same_as_miniset(source, s, [shard.tile_ids[1]])


def test_bad_fetch_mode_is_a_usage_error(hub, tmp_path) -> None:
    from m3leo_cli.errors import UsageError

    with pytest.raises(UsageError, match="unknown fetch mode"):
        _get(_settings(tmp_path, hub), modalities=[DK], fetch="some")
    assert ShardError.default_hint


def test_a_damaged_range_fails_the_page_crc_and_the_whole_shard_is_used(tmp_path) -> None:
    import pyarrow.parquet as pq

    cfg = SynthConfig(regions=(REGION,), editions=("miniset", "full"), tiles=8, datakinds=(DK,),
                      tiles_per_shard=8, rows_per_row_group=1, chip_px=32)  # fmt: skip
    src = write_source(tmp_path / "src", cfg)
    full = src.repo("full", REGION)
    shard = max(full.shards.values(), key=lambda i: i.size)
    path = full.root / shard.path
    table = pq.read_table(path)  # rewrite it as Spark does: with page CRCs
    pq.write_table(table, path, compression="zstd", row_group_size=1, write_page_checksum=True)
    with HubServer(src.root) as srv:
        s = _settings(tmp_path, srv)
        tile = shard.tile_ids[4]
        plan = _get(s, modalities=[DK], tiles=tile, fetch="ranges", dry_run=True)
        assert isinstance(plan, FullDownloadPlan) and plan.shards[0]["mode"] == "ranges"
        srv.clear_log()
        srv.faults = Faults(corrupt_first=1)  # the first content range comes back damaged
        res = _get(s, modalities=[DK], tiles=tile, fetch="ranges")
        assert isinstance(res, DownloadSummary) and res.failed == 0, res.failures
        whole = [r for r in srv.log if r.repo_path == shard.path and r.method == "GET"]
        assert whole[0].range and not whole[-1].range  # a range, then the whole shard
        _same_as_miniset(src, s, [tile])


def test_cli_download_full_json_and_dry_run(source, hub, capsys, monkeypatch, data_dir) -> None:
    import json

    from clirun import run

    monkeypatch.setenv("M3LEO_ENDPOINT", hub.url)
    args = ("download", "--edition", "full", "--region", REGION, "--modality", "s1grd",
            "--split", "val", "--json")  # fmt: skip
    res = run(capsys, *args, "--dry-run")
    assert res.code == 0, res.err
    plan = json.loads(res.out)
    assert plan["shards"] and {p["mode"] for p in plan["shards"]} <= {"whole", "ranges"}
    res = run(capsys, *args)
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    full = source.repo("full", REGION)
    val = [t for t in full.coverage[DK] if full.split_of(t) == "val"]
    assert doc["failed"] == 0 and doc["downloaded"] == len(val) + AUX
    _same_as_miniset(source, load_settings(), val)


def test_cli_fetch_and_keep_shards_settings(source, hub, capsys, monkeypatch, data_dir) -> None:
    import json

    from clirun import run

    monkeypatch.setenv("M3LEO_ENDPOINT", hub.url)
    full = source.repo("full", REGION)
    tile = full.coverage[DK][0]
    args = ("download", "--region", REGION, "--modality", DK, "--tiles", tile, "--json")
    monkeypatch.setenv("M3LEO_FETCH", "sometimes")
    res = run(capsys, *args)
    assert (
        res.code == 2 and "Error: unknown fetch mode 'sometimes'" in res.err and "hint:" in res.err
    )
    monkeypatch.setenv("M3LEO_FETCH", "whole")
    monkeypatch.setenv("M3LEO_KEEP_SHARDS", "1")
    res = run(capsys, *args, "--dry-run")
    assert res.code == 0 and [p["mode"] for p in json.loads(res.out)["shards"]] == ["whole"]
    res = run(capsys, *args)
    assert res.code == 0, res.err
    assert [p.name for p in (data_dir / ".m3leo" / "shards").rglob("*.zstd.parquet")] == [
        full.shard_for(DK, tile).path.rsplit("/", 1)[1]  # type: ignore[union-attr]
    ]


def test_a_corrupt_row_group_in_a_verified_shard(tmp_path) -> None:
    import pyarrow.parquet as pq

    cfg = SynthConfig(regions=(REGION,), editions=("miniset", "full"), tiles=6, datakinds=(DK,),
                      tiles_per_shard=6, rows_per_row_group=1, chip_px=32)  # fmt: skip
    src = write_source(tmp_path / "src", cfg)
    full = src.repo("full", REGION)
    shard = max(full.shards.values(), key=lambda i: len(i.tile_ids))
    path = full.root / shard.path
    pq.write_table(pq.read_table(path), path, compression="zstd", row_group_size=1,
                   write_page_checksum=True)  # fmt: skip
    cc = pq.read_metadata(path).row_group(1).column(2)
    data = bytearray(path.read_bytes())
    start = cc.dictionary_page_offset if cc.has_dictionary_page else cc.data_page_offset
    data[start + cc.total_compressed_size // 2] ^= 0x01
    path.write_bytes(bytes(data))  # the Hub's own copy is damaged: its sha256 still matches
    with HubServer(src.root) as srv:
        s = _settings(tmp_path, srv)
        res = _get(s, modalities=[DK], tiles=",".join(shard.tile_ids), fetch="whole",
                   keep_shards=True)  # fmt: skip
    assert isinstance(res, DownloadSummary)
    bad = {p.rsplit("/", 1)[1].split(".")[0] for p, _ in res.failures}
    assert bad == set(shard.tile_ids[1:])
    assert all("row group 1 is corrupt" in why for _, why in res.failures)
    _same_as_miniset(src, s, [shard.tile_ids[0]])
    region_dir = s.data_dir / "full" / REGION
    assert [f for f in _all_files(region_dir) if f.endswith((".tif", ".part"))] == [
        full.tile_path(DK, shard.tile_ids[0])
    ]
    assert not list((s.data_dir / ".m3leo" / "shards").rglob("*.parquet"))  # not kept


def test_full_and_miniset_downloads_give_the_same_tree(source, hub, capsys, monkeypatch, data_dir):
    from clirun import run

    monkeypatch.setenv("M3LEO_ENDPOINT", hub.url)
    sel = ("--region", REGION, "--modality", "s1grd", "--split", "train", "--quiet")
    assert run(capsys, "download", "--edition", "full", *sel).code == 0
    assert run(capsys, "download", "--edition", "miniset", *sel).code == 0
    trees = {}
    for ed in ("full", "miniset"):
        root = data_dir / ed / REGION
        trees[ed] = {f: (root / f).read_bytes() for f in _all_files(root) if f.endswith(".tif")}
    assert trees["full"] and trees["full"] == trees["miniset"]


@pytest.mark.parametrize("fetch", ["whole", "ranges"])
def test_a_memory_budget_smaller_than_any_row_group_still_unpacks_everything(
    source, hub, tmp_path, monkeypatch, fetch
) -> None:
    """Row groups being decoded and range bodies share one memory budget (peak RSS under
    500 MB whatever the shard size); a budget smaller than a row group serialises them, one
    at a time, and never deadlocks."""
    from m3leo_cli.full import shardjob

    monkeypatch.setattr(shardjob, "MEMORY_BUDGET", 1)
    s = _settings(tmp_path, hub)
    res = _get(s, modalities=["s1grd"], splits=["train"], fetch=fetch)
    assert isinstance(res, DownloadSummary) and res.failed == 0, res.failures
    full = source.repo("full", REGION)
    train = [t for t in full.coverage[DK] if full.split_of(t) == "train"]
    _same_as_miniset(source, s, train)


def test_a_range_cut_mid_body_resumes_where_it_stopped(source, hub, tmp_path) -> None:
    """Ranges stream into the sparse file a MiB at a time; a connection dropped mid-range is
    resumed from the byte it reached (a Range for the rest), not fetched again from its start."""
    s = _settings(tmp_path, hub)
    _get(s, modalities=[DK], splits=["val"], fetch="ranges", dry_run=True)  # catalog + index
    hub.faults = Faults(cut_after_bytes=5000, cut_first=1)
    hub.clear_log()
    res = _get(s, modalities=[DK], splits=["val"], fetch="ranges")
    ranged = [r.range for r in hub.log if r.origin == "content" and r.range]
    hub.reset_faults()
    assert isinstance(res, DownloadSummary) and res.failed == 0, res.failures
    full = source.repo("full", REGION)
    _same_as_miniset(source, s, [t for t in full.coverage[DK] if full.split_of(t) == "val"])
    starts = [int(r.split("=")[1].split("-")[0]) for r in ranged]
    assert any(b - a == 5000 for a, b in zip(starts, starts[1:], strict=False))  # resumed
