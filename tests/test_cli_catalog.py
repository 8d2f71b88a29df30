"""`m3leo catalog refresh|show`, `regions`, `modalities`, `stats`: output and every bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from catalog_source import own_source, shared_source
from clirun import run

from m3leo_cli.server import Faults, HubServer
from m3leo_cli.store.layout import Store
from m3leo_cli.testing.synth import SourceInfo


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    return shared_source(tmp_path_factory)


@pytest.fixture(scope="module")
def server(source: SourceInfo) -> Iterator[HubServer]:
    with HubServer(source.root, page_size=5) as srv:
        yield srv


@pytest.fixture
def hub(server: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    server.faults = Faults()  # a test that set faults must not leave them to the next one
    server.reset_faults()
    server.clear_log()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    return server


@pytest.fixture
def refreshed(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> HubServer:
    res = run(capsys, "catalog", "refresh", "--edition", "miniset", "--region", "europe")
    assert res.code == 0, res.err
    return hub


def assert_error(res, code: int, message: str, hint: str) -> None:
    assert res.code == code, res.err
    lines = res.err.strip().splitlines()
    assert any(line.startswith("Error:") and message in line for line in lines), res.err
    assert any(line.startswith("hint:") and hint in line for line in lines), res.err
    assert "Traceback" not in res.err


def test_refresh_reports_created_then_unchanged(hub: HubServer, capsys) -> None:
    res = run(
        capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe", "-r", "conus", "--json"
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert [r["status"] for r in doc["regions"]] == ["created", "created"]
    assert "europe (miniset, M3LEO-miniset/europe): manifest created at commit" in res.err
    res = run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe")
    assert res.code == 0 and "unchanged at commit" in res.err and "nothing to do" in res.err
    assert res.out == ""


def test_refresh_of_every_region_against_a_mirror_of_two_refreshes_those_two(
    hub: HubServer, capsys, data_dir: Path
) -> None:
    """Issue 27: a mirror holding europe and conus; no --region means every region it has."""
    res = run(capsys, "catalog", "refresh", "-e", "miniset", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert sorted(r["region"] for r in doc["regions"]) == ["conus", "europe"]
    assert doc["absent"] == ["china", "middleeast", "pakin", "southamerica"]
    warnings = [line for line in res.err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {hub.url} has no M3LEO-miniset/<region> repo for china, middleeast, pakin, "
        "southamerica: refreshed the 2 region(s) it has"
    ]
    assert "private or gated" not in res.err
    for region in ("europe", "conus"):
        assert Store(data_dir).manifest_path("miniset", region).exists()
    res = run(capsys, "catalog", "refresh", "-e", "miniset")  # a second time: nothing to do
    assert res.code == 0 and res.err.count("unchanged at commit") == 2
    assert res.err.count("warning:") == 1


def test_refresh_of_a_region_the_mirror_lacks_is_still_an_error(hub: HubServer, capsys) -> None:
    res = run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe", "-r", "china")
    assert res.code == 1
    assert "this mirror has no M3LEO-miniset/china" in res.err


def test_refresh_of_every_region_against_a_mirror_of_none_is_an_error(
    tmp_path: Path, capsys, monkeypatch, data_dir: Path
) -> None:
    (tmp_path / "empty").mkdir()
    with HubServer(tmp_path / "empty") as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        res = run(capsys, "catalog", "refresh", "-e", "miniset")
    assert res.code == 1 and "Traceback" not in res.err
    assert res.err.startswith("Error: this mirror has no M3LEO-miniset/china")
    assert "hint: the mirror at HF_ENDPOINT" in res.err
    assert not Store(data_dir).manifest_root.exists()


def test_stats_json_is_exactly_rows(refreshed: HubServer, source: SourceInfo, capsys) -> None:
    res = run(capsys, "stats", "-e", "miniset", "-r", "europe", "-m", "gssic", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert list(doc) == ["rows", "total"]
    repo = source.repo("miniset", "europe")
    assert doc["total"]["tiles"] == len(repo.coverage["gssic"])
    for row in doc["rows"]:
        assert set(row) == {"edition", "region", "modality", "split", "tiles", "files",
                            "bytes", "local_tiles"}  # fmt: skip
        want = [t for t in repo.coverage["gssic"] if repo.split_of(t) == row["split"]]
        assert (row["modality"], row["tiles"]) == ("gssic", len(want))
    assert sum(r["tiles"] for r in doc["rows"]) == len(repo.coverage["gssic"])


def test_stats_table_for_people(refreshed: HubServer, capsys) -> None:
    res = run(capsys, "stats", "-e", "miniset", "-r", "europe", "-m", "dem", "-s", "train")
    assert res.code == 0, res.err
    assert "srtmdem" in res.out and "train" in res.out and "total" in res.out


def test_stats_tables_fit_80_columns_and_total_counts_distinct_tiles(
    hub: HubServer, source: SourceInfo, capsys, monkeypatch
) -> None:
    """Issue 12 item 7: names were cut (`gunw_2020-01-01_202…`), and the total row added
    tiles across modalities (156 "tiles" for a 20-tile region)."""
    assert run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "conus").code == 0
    monkeypatch.setenv("COLUMNS", "80")
    res = run(capsys, "stats", "-e", "miniset", "-r", "conus")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in res.out
    assert "gunw_2020-01-01_2020-03-31" in res.out
    repo = source.repo("miniset", "conus")
    total = next(line for line in lines if line.strip().startswith("total")).split()
    assert total[1] == str(len(repo.tiles))  # distinct tiles, not a sum over modalities
    doc = json.loads(run(capsys, "stats", "-e", "miniset", "-r", "conus", "--json").out)
    assert doc["total"]["tiles"] == len(repo.tiles)
    assert sum(r["tiles"] for r in doc["rows"]) > len(repo.tiles)
    doc = json.loads(run(capsys, "stats", "-e", "miniset", "-r", "conus", "-s", "val",
                         "-m", "s1grd", "-m", "gssic", "--json").out)  # fmt: skip
    val = {t for t, sp in ((t, repo.split_of(t)) for t in repo.tiles) if sp == "val"}
    assert doc["total"]["tiles"] == len(val)


def test_stats_works_offline_from_the_cache(refreshed: HubServer, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refreshed.clear_log()
    res = run(capsys, "stats", "-e", "miniset", "-r", "europe", "--json")
    assert res.code == 0 and json.loads(res.out)["rows"] and refreshed.log == []
    res = run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe")
    assert_error(res, 1, "offline mode is on", "unset HF_HUB_OFFLINE")


def test_regions_modalities_and_show(refreshed: HubServer, capsys) -> None:
    res = run(capsys, "regions", "--json")
    regions = {r["region"]: r for r in json.loads(res.out)["regions"]}
    assert set(regions) == {"china", "conus", "europe", "middleeast", "pakin", "southamerica"}
    assert regions["europe"]["manifests"]["miniset"]["tiles"] == 10
    res = run(capsys, "modalities", "-r", "europe", "-e", "miniset", "--json")
    mods = {m["datakind"]: m for m in json.loads(res.out)["modalities"]}
    assert "gunw_2020-01-01_2020-03-31" not in mods
    assert mods["s1grd-2020"]["bands"][0] == "winter_vvasc" and mods["gssic"]["tiles"] > 0
    res = run(capsys, "modalities", "-r", "conus")
    assert res.code == 0 and "gunw_2020-08-01_2020-10-31" in res.out
    res = run(capsys, "catalog", "show", "-e", "miniset", "-r", "europe", "--json")
    assert json.loads(res.out)["manifests"][0]["status"] == "ok"
    assert run(capsys, "regions").code == 0 and run(capsys, "catalog", "show").code == 0


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("args", "code", "message", "hint"),
    [  # a flag typed wrong is a usage mistake (2); a valid one matching nothing here is 1
        (["-r", "europa"], 2, "unknown region 'europa'", "'europe'"),
        (["-m", "gsic"], 2, "unknown modality 'gsic'", "'gssic'"),
        (["--bbox", "1,2,3"], 2, "malformed bbox", "W,S,E,N"),
        (["--bbox", "a,b,c,d"], 2, "malformed bbox", "W,S,E,N"),
        (["--bbox", ""], 2, "malformed bbox", "W,S,E,N"),
        (["-r", "europe", "--bbox", "-120,30,-119,31"], 1, "overlaps no miniset tile", "W,S,E,N"),
        (["-r", "europe", "-m", "gunw"], 1, "region europe has no gunw datakind", "modalities"),
        (["-r", "europe", "--tiles", "zzz"], 2, "bad tile id 'zzz'", "13 lowercase hex"),
        (["-r", "europe", "--tiles", ""], 2, "--tiles is empty", "--tiles 020d259a89240"),
        (["-r", "europe", "--tiles", " , "], 2, "--tiles is empty", "leave it out"),
        (["-r", "europe", "--tiles", "3" * 13], 1, "not in the miniset manifest", "--region"),
        (["-r", "conus"], 1, "no miniset manifest for conus", "m3leo catalog refresh"),
    ],
)  # fmt: skip
def test_bad_selection(refreshed: HubServer, capsys, args, code, message, hint) -> None:
    assert_error(run(capsys, "stats", "-e", "miniset", *args), code, message, hint)


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", " \n"])
def test_empty_tiles_file_is_an_error_not_every_tile(
    refreshed: HubServer, capsys, tmp_path: Path, text: str
) -> None:
    """Issue 12 item 3: an empty --tiles-file selected every tile (a dry run planned it all)."""
    f = tmp_path / "tiles.txt"
    f.write_text(text)
    for cmd in (["stats"], ["download", "--dry-run"], ["export", "-f", "npz", "-o",
                str(tmp_path / "o"), "-m", "gssic"]):  # fmt: skip
        res = run(capsys, *cmd, "-e", "miniset", "-r", "europe", "--tiles-file", str(f))
        assert_error(res, 2, "holds no tile ids", "one tile id per line")
        assert not (tmp_path / "o").exists()


def test_full_edition_bbox_points_at_the_miniset(hub: HubServer, capsys) -> None:
    assert run(capsys, "catalog", "refresh", "-r", "europe").code == 0
    res = run(capsys, "stats", "-r", "europe", "--bbox", "5,45,6,46")
    assert_error(res, 2, "full edition publishes no tile geometry", "--edition miniset")


def test_tiles_file_with_bad_ids(refreshed: HubServer, capsys, tmp_path: Path) -> None:
    f = tmp_path / "tiles.txt"
    f.write_text("# my tiles\n0123456789abc\nnot-a-tile\n")
    res = run(capsys, "stats", "-e", "miniset", "-r", "europe", "--tiles-file", str(f))
    assert_error(res, 2, "bad tile id 'not-a-tile'", "13 lowercase hex")


@pytest.mark.parametrize("kind", ["garbage", "foreign"])
def test_corrupt_or_foreign_manifest(refreshed: HubServer, capsys, data_dir: Path, kind) -> None:
    path = Store(data_dir).manifest_path("miniset", "europe")
    if kind == "garbage":
        path.write_bytes(b"\x00" * 100)
    else:
        pq.write_table(pa.table({"x": [1]}), path)
    res = run(capsys, "stats", "-e", "miniset", "-r", "europe")
    assert_error(res, 1, "is not an m3leo manifest", "catalog refresh")
    res = run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe")
    assert res.code == 0 and "unreadable manifest" in res.err


@pytest.mark.parametrize(
    ("fault", "message", "hint"),
    [
        ({"SPLITS": 404}, "not found on the Hub", "--revision"),
        ({"SPLITS": 401}, "access denied", "HF_TOKEN"),
        ("garbage", "invalid JSON", "HF_ENDPOINT"),
    ],
)
def test_hub_failures_keep_the_old_manifest(
    tmp_path: Path, capsys, monkeypatch, data_dir: Path, fault, message, hint
) -> None:
    root, info = own_source(tmp_path)
    split_csv = next(p for p in info.repo("miniset", "europe").files if p.endswith(".csv"))
    with HubServer(root, page_size=4) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        assert run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe").code == 0
        path = Store(data_dir).manifest_path("miniset", "europe")
        before = path.read_bytes()
        (root / "M3LEO-miniset" / "europe" / "NOTES.txt").write_text("a new commit\n")
        if fault == "garbage":
            srv.faults = Faults(garbage_json=True)
        else:
            srv.faults = Faults(status_for_paths={split_csv: fault["SPLITS"]})
        res = run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe")
    assert_error(res, 1, message, hint)
    assert path.read_bytes() == before


def test_split_csv_corrupted_in_transit_is_refetched_never_trusted(
    hub: HubServer, capsys, data_dir: Path
) -> None:
    hub.faults = Faults(corrupt_first=1)  # the first GET of every file has one byte flipped
    res = run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe", "--json")
    assert res.code == 0, res.err
    path = Store(data_dir).manifest_path("miniset", "europe")
    good = pq.read_table(path).to_pylist()
    hub.faults = Faults()
    res = run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe", "--force")
    assert res.code == 0, res.err
    assert pq.read_table(path).to_pylist() == good
    hub.faults = Faults(corrupt_first=100)  # a mirror that always corrupts: refuse, keep the old
    res = run(capsys, "catalog", "refresh", "-e", "miniset", "-r", "europe", "--force")
    assert_error(res, 1, "differs from its listed checksum", "HF_ENDPOINT")
    assert pq.read_table(path).to_pylist() == good


def test_tiles_lists_ids_with_split_bbox_and_datakinds(
    refreshed: HubServer, source: SourceInfo, capsys, tmp_path: Path, monkeypatch
) -> None:
    """Issue 12 item 9: there was no way to list tile ids (`show` needed the split CSV)."""
    repo = source.repo("miniset", "europe")
    res = run(capsys, "tiles", "-e", "miniset", "-r", "europe", "--json")
    assert res.code == 0, res.err
    tiles = {t["tile_id"]: t for t in json.loads(res.out)["tiles"]}
    assert set(tiles) == set(repo.tiles)
    for tid, t in tiles.items():
        assert t["split"] == repo.split_of(tid) and t["region"] == "europe"
        assert t["bbox"] == pytest.approx(list(repo.tiles[tid].bbox))
        want = sorted(dk for dk, ids in repo.coverage.items() if tid in ids)
        assert t["datakinds"] == want and t["local"] == [] and t["not_published"] == []
    # filters as everywhere; --ids makes a --tiles-file
    res = run(capsys, "tiles", "-e", "miniset", "-r", "europe", "-s", "val", "-m", "gssic", "--ids")
    ids = res.out.split()
    val = {t for t in repo.coverage["gssic"] if repo.split_of(t) == "val"}
    assert res.code == 0 and set(ids) == val and len(ids) == len(val)
    f = tmp_path / "val.txt"
    f.write_text(res.out)
    res = run(capsys, "stats", "-e", "miniset", "-r", "europe", "--tiles-file", str(f), "--json")
    assert json.loads(res.out)["total"]["tiles"] == len(val)
    monkeypatch.setenv("COLUMNS", "80")
    res = run(capsys, "tiles", "-e", "miniset", "-r", "europe")
    assert res.code == 0 and max(len(line) for line in res.out.splitlines()) <= 80
    first = sorted(repo.tiles)[0]
    assert first in res.out and f"{len(repo.tiles)} tiles; datakinds: " in res.err
    res = run(capsys, "tiles", "-e", "miniset", "-r", "europe", "--tiles", "")
    assert_error(res, 2, "--tiles is empty", "leave it out")
