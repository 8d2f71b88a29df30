"""Full-edition shards: footer/row-group planning, range reads, streaming unpack (no network)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m3leo_cli import spec
from m3leo_cli.errors import ShardError
from m3leo_cli.full.index import (
    RangeFile,
    ShardIndex,
    coalesce,
    load_index,
    read_footer,
    save_index,
)
from m3leo_cli.full.plan import ShardTask, choose, fetch_index, plan_ranges, row_group_batches
from m3leo_cli.full.unpack import RowRules, open_local, unpack_parquet, unpack_shard
from m3leo_cli.testing.synth import SynthConfig, write_source

REGION = "europe"
PART = spec.get_region(REGION).partition
DK = "s1grd-2020"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("src")
    cfg = SynthConfig(
        regions=(REGION,),
        tiles=16,
        datakinds=(DK, "gssic"),
        tiles_per_shard=8,
        rows_per_row_group=1,
    )
    return write_source(root, cfg)


def _shard(source, datakind=DK):
    repo = source.repo("full", REGION)
    info = max(
        (s for s in repo.shards.values() if s.datakind == datakind), key=lambda s: len(s.tile_ids)
    )
    return repo, info, repo.root / info.path


def _reader(data: bytes, log: list[tuple[int, int]]):
    def read(start: int, end: int) -> bytes:
        log.append((start, end))
        return data[start : end + 1]

    return read


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _write_shard(path: Path, rows: list[tuple[str, str, bytes]], rg: int = 2, length=None) -> None:
    t = pa.table(
        {
            "path": [r[0] for r in rows],
            "ds": [r[1] for r in rows],
            "content": pa.array([r[2] for r in rows], pa.binary()),
            "length": length if length is not None else [len(r[2]) for r in rows],
        }
    )
    pq.write_table(t, path, compression="zstd", row_group_size=rg)


def test_local_unpack_is_byte_identical_to_miniset(source, tmp_path: Path) -> None:
    repo, info, path = _shard(source)
    mini = source.repo("miniset", REGION)
    report = unpack_shard(path, tmp_path)
    assert report.region == REGION and not report.refused and not report.missing
    assert len(report.written) == len(info.tile_ids)
    for tile in info.tile_ids:
        rel = repo.tile_path(DK, tile)
        out = tmp_path / rel
        assert out.read_bytes() == (mini.root / rel).read_bytes()
        assert any(f.path == rel and f.sha256 == _sha(out) for f in report.written)
    assert not list(tmp_path.rglob("*.part"))


def test_footer_in_one_request_and_index_round_trip(source, tmp_path: Path) -> None:
    _, info, path = _shard(source)
    data = path.read_bytes()
    log: list[tuple[int, int]] = []
    footer = read_footer(_reader(data, log), len(data), info.path)
    assert len(log) == 1 and data.endswith(footer)
    idx = ShardIndex(info.path, len(data), footer, sha256=info.sha256)
    assert idx.num_row_groups == len(info.row_groups)
    save_index(tmp_path, idx)
    again = load_index(tmp_path, info.sha256)
    assert again is not None and again.footer == footer
    (tmp_path / f"{info.sha256}.json").write_text("{not json")
    assert load_index(tmp_path, info.sha256) is None


def test_truncated_or_foreign_footer_is_a_shard_error(tmp_path: Path) -> None:
    data = b"PAR1" + b"x" * 100
    with pytest.raises(ShardError, match="truncated or not Parquet"):
        read_footer(_reader(data, []), len(data), "bad.parquet")
    cut = tmp_path / "cut.zstd.parquet"
    _write_shard(cut, [(f"{REGION}/{PART}/{DK}/{'0' * 12}1.tif", DK, b"abc")])
    cut.write_bytes(cut.read_bytes()[:-5])
    with pytest.raises(ShardError, match="truncated") as exc:
        unpack_shard(cut, tmp_path / "out")
    assert exc.value.hint


def test_coalesce_merges_near_spans_only() -> None:
    assert coalesce([(10, 20), (0, 5), (22, 30)], gap=2) == [(0, 5), (10, 30)]
    assert coalesce([(0, 10), (11, 20)], gap=5, max_span=15) == [(0, 10), (11, 20)]


def _task(repo, info, tiles) -> ShardTask:
    return ShardTask(
        region=REGION,
        shard=info.path,
        datakind=info.datakind,
        size=info.size,
        sha256=info.sha256,
        commit="0" * 40,
        wanted={t: repo.tile_path(info.datakind, t) for t in tiles},
        known=frozenset(info.tile_ids),
    )


def test_one_tile_by_ranges_reads_a_small_part_and_unpacks_it(source, tmp_path: Path) -> None:
    repo, info, path = _shard(source)
    data = path.read_bytes()
    tile = info.tile_ids[3]
    task = _task(repo, info, [tile])
    log: list[tuple[int, int]] = []
    choose(task, "auto", _reader(data, log), tmp_path / "idx")
    assert task.mode == "ranges" and len(task.row_groups) == 1
    planning = sum(e - s + 1 for s, e in log)
    idx = task.index
    batches = {b[0][0]: b[1] for b in row_group_batches(idx, task.row_groups)}
    rf = RangeFile(_reader(data, log), len(data), info.path)
    pf = pq.ParquetFile(rf, metadata=idx.metadata, pre_buffer=False)
    rules = RowRules(REGION, DK, dict(task.wanted), task.known)
    report = unpack_parquet(
        pf,
        tmp_path / "out",
        rules,
        source=info.path,
        row_groups=task.row_groups,
        before_row_group=lambda rg: rf.prefetch(batches[rg]),
    )
    assert [f.path for f in report.written] == [task.wanted[tile]]
    out = tmp_path / "out" / task.wanted[tile]
    assert (
        out.read_bytes() == (source.repo("miniset", REGION).root / task.wanted[tile]).read_bytes()
    )
    total = sum(e - s + 1 for s, e in log)
    assert rf.fetched == task.bytes and total == planning + task.bytes
    assert total < 0.5 * len(data)
    # a second selection in the same shard: footer and path chunks come from the cache
    log.clear()
    task2 = _task(repo, info, [tile])
    choose(task2, "auto", _reader(data, log), tmp_path / "idx")
    assert log == [] and task2.row_groups == task.row_groups


def test_auto_prefers_whole_when_most_tiles_are_wanted(source, tmp_path: Path) -> None:
    repo, info, path = _shard(source)
    log: list[tuple[int, int]] = []
    task = _task(repo, info, info.tile_ids)
    choose(task, "auto", _reader(path.read_bytes(), log), tmp_path)
    assert task.mode == "whole" and task.bytes == info.size and log == []
    forced = _task(repo, info, info.tile_ids[:1])
    choose(forced, "whole", _reader(b"", log), tmp_path)
    assert forced.mode == "whole" and log == []


def test_a_tile_the_map_promises_but_the_shard_lacks(source, tmp_path: Path) -> None:
    repo, info, path = _shard(source, "gssic")
    lacking = [
        t for t in repo.missing("gssic") if repo.parquet_ids.get(t) == info.parquet_identifier
    ]
    if not lacking:
        pytest.skip("the synthetic gssic shard holds every tile")  # pragma: no cover
    task = _task(repo, info, [lacking[0], info.tile_ids[0]])
    task.known = frozenset(info.tile_ids + (lacking[0],))
    fetch_index(task, _reader(path.read_bytes(), []), tmp_path)
    plan_ranges(task, task.index)
    assert task.absent == [lacking[0]]
    report = unpack_shard(path, tmp_path / "out", dict(task.wanted), region=REGION)
    assert report.missing == [lacking[0]]
    assert [f.path for f in report.written] == [task.wanted[info.tile_ids[0]]]


def test_bad_rows_are_refused_and_the_rest_unpacked(tmp_path: Path) -> None:
    good = f"{REGION}/{PART}/{DK}/{'1' * 13}.tif"
    rows = [
        (good, DK, b"good"),
        (f"{REGION}/{PART}/{DK}/../../../../escape.tif", DK, b"x"),
        (f"{REGION}/{PART}/{DK}/..", DK, b"x"),
        (f"conus/{spec.get_region('conus').partition}/{DK}/{'2' * 13}.tif", DK, b"x"),
        (f"{REGION}/{PART}/srtmdem/{'3' * 13}.tif", "srtmdem", b"x"),
        (f"{REGION}/{PART}/{DK}/{'4' * 13}.tif", "gssic", b"x"),
        (f"{REGION}/other_partitions/{DK}/{'5' * 13}.tif", DK, b"x"),
        (good, DK, b"dup"),
        (f"{REGION}/{PART}/{DK}/{'6' * 13}.tif", DK, b"short"),
    ]
    shard = tmp_path / "s.zstd.parquet"
    _write_shard(shard, rows, length=[len(r[2]) for r in rows[:-1]] + [99])
    out = tmp_path / "out"
    report = unpack_shard(shard, out, region=REGION, datakind=DK)
    assert [f.path for f in report.written] == [good.split("/", 1)[1]]
    reasons = [why for _, why in report.refused]
    assert len(reasons) == len(rows) - 1
    assert any("region 'conus'" in r for r in reasons)
    assert any("datakind 'srtmdem'" in r for r in reasons)
    assert any("ds column" in r for r in reasons)
    assert any("twice" in r for r in reasons)
    assert any("length column" in r for r in reasons)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["out/" + good.split("/", 1)[1], "s.zstd.parquet"]


def test_a_row_naming_a_tile_of_another_shard_is_reported(tmp_path: Path) -> None:
    a, b = "a" * 12 + "0", "b" * 12 + "0"
    rows = [(f"{REGION}/{PART}/{DK}/{t}.tif", DK, t.encode()) for t in (a, b)]
    shard = tmp_path / "s.zstd.parquet"
    _write_shard(shard, rows)
    rules = RowRules(REGION, DK, {a: f"{PART}/{DK}/{a}.tif"}, frozenset({a}))
    report = unpack_parquet(open_local(shard), tmp_path / "o", rules, source="s")
    assert [f.path for f in report.written] == [f"{PART}/{DK}/{a}.tif"]
    assert report.refused and "does not put in this shard" in report.refused[0][1]


def test_corrupt_row_group_stops_with_nothing_half_written(tmp_path: Path) -> None:
    rows = [(f"{REGION}/{PART}/{DK}/{i:013x}.tif", DK, bytes([i]) * 5000) for i in range(4)]
    shard = tmp_path / "s.zstd.parquet"
    _write_shard(shard, rows, rg=2)
    md = pq.read_metadata(shard)
    cc = md.row_group(1).column(2)
    start = cc.dictionary_page_offset or cc.data_page_offset
    data = bytearray(shard.read_bytes())
    for i in range(start + 20, start + cc.total_compressed_size - 4):
        data[i] ^= 0x5A
    shard.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(ShardError, match="row group 1 is corrupt") as exc:
        unpack_shard(shard, out)
    assert "--fetch whole" in exc.value.hint
    written = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert written == [f"{0:013x}.tif", f"{1:013x}.tif"]


def test_range_file_fetches_unknown_bytes_on_demand() -> None:
    data = bytes(range(256)) * 4
    log: list[tuple[int, int]] = []
    rf = RangeFile(_reader(data, log), len(data))
    rf.prefetch([(0, 100)])
    rf.seek(10)
    assert rf.read(5) == data[10:15] and len(log) == 1
    rf.seek(-4, io.SEEK_END)
    assert rf.read() == data[-4:] and len(log) == 2 and rf.fetched == 104


def test_page_checksums_catch_a_flipped_byte(tmp_path: Path) -> None:
    rows = [(f"{REGION}/{PART}/{DK}/{i:013x}.tif", DK, bytes(range(256)) * 40) for i in range(2)]
    t = pa.table({"path": [r[0] for r in rows], "ds": [r[1] for r in rows],
                  "content": pa.array([r[2] for r in rows], pa.binary())})  # fmt: skip
    shard = tmp_path / "s.zstd.parquet"
    pq.write_table(t, shard, compression="zstd", row_group_size=1, write_page_checksum=True)
    cc = pq.read_metadata(shard).row_group(1).column(2)
    data = bytearray(shard.read_bytes())
    start = cc.dictionary_page_offset if cc.has_dictionary_page else cc.data_page_offset
    data[start + cc.total_compressed_size // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="row group 1 is corrupt"):
        unpack_shard(shard, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").rglob("*.tif")] == [f"{0:013x}.tif"]


def test_tiles_known_absent_from_a_complete_index_cost_nothing(source, tmp_path: Path) -> None:
    repo, info, path = _shard(source)
    data = path.read_bytes()
    idx = ShardIndex(info.path, len(data), read_footer(_reader(data, []), len(data), "s"),
                     sha256=info.sha256)  # fmt: skip
    pf = pq.ParquetFile(path)
    for rg in range(idx.num_row_groups):
        idx.rows[rg] = pf.read_row_group(rg, columns=["path"]).column(0).to_pylist()
    save_index(tmp_path, idx)
    ghost = "3" + "0" * 12
    task = _task(repo, info, [])
    task.wanted = {ghost: f"{PART}/{DK}/{ghost}.tif"}
    log: list[tuple[int, int]] = []
    choose(task, "whole", _reader(data, log), tmp_path)
    assert (
        task.mode == "skip"
        and task.absent == [ghost]
        and not task.wanted
        and task.bytes == 0
        and log == []
    )


def test_the_range_memory_budget_bounds_what_ranges_tasks_hold() -> None:
    """Row-group bytes fetched by ranges tasks share one budget: a task waits for room, a row
    group larger than the budget takes all of it (never a deadlock), a stopping run is not kept
    waiting."""
    import threading

    from m3leo_cli.fetch.transfer import Cancelled
    from m3leo_cli.full.shardjob import ByteBudget

    budget, stop = ByteBudget(100), threading.Event()
    first = budget.acquire(60, stop)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(budget.acquire(50, stop)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and got == []  # 60 + 50 > 100: it waits
    budget.release(first)
    waiter.join(5)
    assert got == [50] and budget.free == 50
    budget.release(50)
    assert budget.acquire(10**9, stop) == 100  # larger than the budget: all of it
    stop.set()
    with pytest.raises(Cancelled):
        budget.acquire(1, stop)  # nothing left, and the run is stopping
