"""A new user's first hour (issue 27): one edition story, selections that refuse nonsense,
maps of every region asked for, hints that work from where the user stands.

One synthetic source (europe + conus, both editions) on the loopback Hub; two stores made
from it: ``mini`` holds the miniset manifests of both regions and europe's miniset tiles;
``both`` holds the same plus the full edition's manifests (nothing of it downloaded).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from m3leo_cli.catalog.refresh import refresh
from m3leo_cli.config import load_settings
from m3leo_cli.mirror.download import download
from m3leo_cli.selection import Selection
from m3leo_cli.server import HubServer
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source
from tests.clirun import run

CONFIG = SynthConfig(regions=("europe", "conus"), tiles=6, chip_px=16, native_shape=(4, 5))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SourceInfo, Path, Path]]:
    src = write_source(tmp_path_factory.mktemp("src"), CONFIG)
    mini = tmp_path_factory.mktemp("stores") / "mini"
    both = mini.parent / "both"
    with HubServer(src.root) as srv:
        s = load_settings({"endpoint": srv.url, "data_dir": mini}, env={})
        refresh(s, "miniset", ["europe", "conus"])
        download(s, Selection(edition="miniset", regions=("europe",)), check_space=False)
        shutil.copytree(mini, both)
        refresh(load_settings({"endpoint": srv.url, "data_dir": both}, env={}), "full",
                ["europe", "conus"])  # fmt: skip
    yield src, mini, both


def _europe_tile(src: SourceInfo) -> str:
    return sorted(src.repo("miniset", "europe").tiles)[0]


# --------------------------------------------------------------------------- one edition story


def test_a_miniset_only_store_means_the_miniset_for_every_command(capsys, stores) -> None:
    src, mini, _ = stores
    tile = _europe_tile(src)
    said = "edition: miniset (the store holds only miniset manifests"
    res = run(capsys, "stats", "--region", "europe", "--data-dir", str(mini), "--json")
    assert res.code == 0, res.err
    assert said in res.err and res.err.count("\n") == 1  # one line
    rows = json.loads(res.out)["rows"]
    assert rows and all(r["local_tiles"] == r["tiles"] for r in rows)
    res = run(capsys, "info", tile, "--data-dir", str(mini))
    assert res.code == 0, res.err
    assert said in res.err and "[local ]" in res.out and "[remote]" not in res.out
    res = run(capsys, "tiles", "--region", "europe", "--ids", "--data-dir", str(mini))
    assert res.code == 0 and tile in res.out.split()
    for argv in (["catalog", "show"], ["modalities"]):
        res = run(capsys, *argv, "--data-dir", str(mini), "--json")
        assert res.code == 0 and said in res.err, argv
    shown = json.loads(run(capsys, "catalog", "show", "--data-dir", str(mini), "--json").out)
    assert {m["edition"] for m in shown["manifests"]} == {"miniset"}


def test_both_editions_or_none_mean_full_and_say_nothing(capsys, stores, tmp_path) -> None:
    _, _, both = stores
    res = run(capsys, "stats", "--region", "europe", "--data-dir", str(both), "--json")
    assert res.code == 0, res.err
    assert "edition:" not in res.err
    assert {r["region"] for r in json.loads(res.out)["rows"]} == {"europe"}
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run(capsys, "stats", "--region", "europe", "--data-dir", str(empty))
    assert res.code == 1 and "edition:" not in res.err
    assert res.err.startswith("Error: no full manifest for europe")


def test_local_zero_and_remote_answers_name_the_edition_that_has_the_data(capsys, stores) -> None:
    src, _, both = stores
    res = run(capsys, "stats", "--region", "europe", "--data-dir", str(both))
    assert res.code == 0, res.err
    assert "hint: nothing of the full edition is local" in res.err
    assert "--edition miniset" in res.err
    tile = _europe_tile(src)
    res = run(capsys, "info", tile, "--data-dir", str(both))
    assert res.code == 0, res.err
    assert "[remote]" in res.out and "[local ]" not in res.out
    assert "hint: the store holds miniset tiles of europe: add --edition miniset" in res.err
    # the miniset's own answers do not point at the full edition, which has nothing local
    res = run(capsys, "stats", "--region", "europe", "--edition", "miniset", "--data-dir",
              str(both))  # fmt: skip
    assert res.code == 0 and "hint:" not in res.err


def test_an_explicit_edition_the_store_lacks_names_the_one_it_holds(capsys, stores) -> None:
    _, mini, _ = stores
    res = run(capsys, "stats", "--edition", "full", "--region", "europe", "--data-dir", str(mini))
    assert res.code == 1
    assert res.err.startswith("Error: no full manifest for europe")
    assert "hint: the store holds miniset manifests: add --edition miniset" in res.err


def test_an_empty_selection_names_the_other_edition(capsys, stores) -> None:
    """A full-edition tile whose gssic no shard holds: a valid selection that matches nothing."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    _, _, both = stores
    table = pq.read_table(both / "manifest" / "edition=full" / "region=europe" / "manifest.parquet")
    rows = table.filter((pc.field("kind") == "tile") & pc.field("shard").is_null()).to_pylist()
    assert rows, "the synthetic full edition leaves some tiles out of the shards"
    res = run(capsys, "stats", "--edition", "full", "--region", "europe", "--data-dir", str(both),
              "--modality", rows[0]["datakind"], "--tiles", rows[0]["tile_id"])  # fmt: skip
    assert res.code == 1
    assert res.err.startswith("Error: no tile matches edition full, region europe")
    assert "hint: the store holds miniset tiles: add --edition miniset; widen" in res.err


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("year", ["-1", "2019"])
def test_a_year_without_a_layer_is_a_usage_error_naming_the_years(capsys, stores, year) -> None:
    _, mini, _ = stores
    res = run(capsys, "stats", "--edition", "miniset", "--region", "europe", "--year", year,
              "--data-dir", str(mini))  # fmt: skip
    assert res.code == 2, res.err
    assert res.out == ""
    assert res.err.startswith("Error: --year")
    if year == "2019":
        assert "(years here: 2020)" in res.err and "hint: use --year 2020" in res.err


def test_a_year_that_exists_still_selects(capsys, stores) -> None:
    _, _, both = stores
    res = run(capsys, "stats", "--edition", "full", "--region", "europe", "--year", "2019",
              "--data-dir", str(both), "--json")  # fmt: skip
    assert res.code == 0, res.err
    kinds = {r["modality"] for r in json.loads(res.out)["rows"]}
    assert {"s1grd-2019", "s2srm-2019"} <= kinds and "s1grd-2020" not in kinds


@pytest.mark.parametrize("command", ["stats", "tiles", "download", "verify", "export"])
def test_a_negative_limit_is_a_usage_error(capsys, stores, command, tmp_path) -> None:
    _, mini, _ = stores
    extra = ["--format", "npz", "--out", str(tmp_path / "o")] if command == "export" else []
    res = run(capsys, command, "--edition", "miniset", "--region", "europe", "--limit", "-1",
              "--data-dir", str(mini), *extra)  # fmt: skip
    assert res.code == 2 and "--limit must be at least 1" in res.err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- map


def test_map_draws_every_region_asked_for(capsys, stores, tmp_path) -> None:
    src, mini, _ = stores
    out = tmp_path / "m.html"
    res = run(capsys, "map", "--region", "europe", "--region", "conus", "--out", str(out),
              "--data-dir", str(mini))  # fmt: skip
    assert res.code == 0, res.err
    page = out.read_text()
    europe, conus = src.repo("miniset", "europe").tiles, src.repo("miniset", "conus").tiles
    assert page.count('class="tile"') == len(europe) + len(conus)
    assert all(t in page for t in [*europe, *conus])
    assert "europe + conus" in page


def test_map_colours_a_tile_local_only_when_all_its_files_are(capsys, stores, tmp_path) -> None:
    src, mini, _ = stores
    store = tmp_path / "store"
    shutil.copytree(mini, store)
    repo = src.repo("miniset", "europe")
    tile = sorted(repo.tiles)[1]
    one = next(fi for (dk, t), fi in sorted(repo.tile_files.items()) if t == tile)
    (store / "miniset" / "europe" / one.path).unlink()
    out = tmp_path / "m.html"
    res = run(capsys, "map", "--region", "europe", "--color-by", "local", "--out", str(out),
              "--data-dir", str(store))  # fmt: skip
    assert res.code == 0, res.err
    page = out.read_text()
    assert f"local ({len(repo.tiles) - 1})" in page and "partly local (1)" in page
    files = sum(1 for (_, t) in repo.tile_files if t == tile)
    assert f"{tile} · europe · " in page and f"{files - 1}/{files} files local" in page


# --------------------------------------------------------------------------- settings, hints


def test_a_config_file_that_does_not_exist_is_an_error(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("M3LEO_CONFIG", str(tmp_path / "typo.toml"))
    res = run(capsys, "config", "show")
    assert res.code == 2
    assert res.err.startswith(f"Error: the config file {tmp_path / 'typo.toml'} (M3LEO_CONFIG)")
    assert "hint: fix the path in M3LEO_CONFIG" in res.err
    monkeypatch.setenv("M3LEO_CONFIG", os.devnull)  # the documented "no config file"
    assert run(capsys, "config", "show").code == 0


def test_a_data_dir_typo_says_the_folder_does_not_exist(capsys, stores) -> None:
    _, mini, _ = stores
    typo = mini.parent / "mimi"
    res = run(capsys, "stats", "--edition", "miniset", "--region", "europe", "--data-dir",
              str(typo))  # fmt: skip
    assert res.code == 2  # a folder the user typed: a usage error
    assert res.err.startswith(f"Error: the data dir {typo} does not exist (from command line)")
    assert "catalog refresh" not in res.err
    assert "hint: check --data-dir (or M3LEO_DATA_DIR)" in res.err and str(mini) in res.err
    assert not typo.exists()  # nothing written at the typo


def test_a_refused_dask_scheduler_fails_at_once_with_the_flag(capsys, stores) -> None:
    pytest.importorskip("distributed")
    _, mini, _ = stores
    res = run(capsys, "stats", "--bands", "--edition", "miniset", "--region", "europe",
              "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--data-dir",
              str(mini))  # fmt: skip
    assert res.code == 1
    assert "Error: cannot start the Dask engine on tcp://127.0.0.1:1" in res.err
    assert "nothing answers on port 1" in res.err  # the probe, not distributed's 30 s retries
    assert "hint: check --scheduler (or M3LEO_DASK_SCHEDULER)" in res.err


def test_show_refuses_an_unwritable_out_before_reading_the_tile(capsys, stores, tmp_path) -> None:
    src, mini, _ = stores
    conus = sorted(src.repo("miniset", "conus").tiles)[0]  # not downloaded: reading it fails
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = run(capsys, "show", conus, "--edition", "miniset", "--out", str(blocker / "t.png"),
              "--data-dir", str(mini))  # fmt: skip
    assert res.code == 1
    assert "not local" not in res.err and "download" not in res.err
    assert str(blocker) in res.err and "hint: check that the folder exists" in res.err
    res = run(capsys, "show", conus, "--edition", "miniset", "--out",
              str(tmp_path / "new" / "t.png"), "--data-dir", str(mini))  # fmt: skip
    assert res.code == 1 and "not downloaded" in res.err
    assert not (tmp_path / "new").exists()  # the check made no folder
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        res = run(capsys, "show", conus, "--edition", "miniset", "--out", str(ro / "t.png"),
                  "--data-dir", str(mini))  # fmt: skip
        assert res.code == 1 and "Permission denied" in res.err


@pytest.mark.parametrize("tiles", ["1", "2"])
def test_demo_refuses_too_few_tiles_up_front(capsys, tmp_path, tiles) -> None:
    work = tmp_path / "demo"
    res = run(capsys, "demo", "--tiles", tiles, "--workdir", str(work))
    assert res.code == 2
    assert res.err.startswith(f"Error: --tiles {tiles} is too few: the demo needs at least 3")
    assert "hint: give --tiles 3 or more" in res.err
    assert not work.exists()


# --------------------------------------------------------------------------- 80 columns


def _fits(text: str, width: int = 80) -> list[str]:
    from rich.cells import cell_len

    return [line for line in text.splitlines() if cell_len(line) > width]


def test_tables_fit_80_columns_and_keep_every_value(capsys, stores, monkeypatch) -> None:
    from m3leo_cli import spec

    src, mini, both = stores
    monkeypatch.setenv("COLUMNS", "80")
    for store in (mini, both):
        res = run(capsys, "modalities", "--data-dir", str(store))
        assert res.code == 0 and not _fits(res.out), _fits(res.out)
        assert "…" not in res.out
        words = res.out.split()
        for family in spec.FAMILIES.values():  # every alias, whole
            for alias in family.aliases:
                assert alias in words or f"{alias}," in words, alias
    res = run(capsys, "catalog", "show", "--data-dir", str(both))
    assert res.code == 0 and not _fits(res.out) and "…" not in res.out
    shown = json.loads(run(capsys, "catalog", "show", "--data-dir", str(both), "--json").out)
    for m in shown["manifests"]:
        if m["status"] == "ok":
            assert m["commit"][:12] in res.out and m["refreshed_at"][:10] in res.out
    res = run(capsys, "regions", "--data-dir", str(both))
    assert res.code == 0 and not _fits(res.out) and "…" not in res.out
    assert "southamerica" in res.out and "285,402" in res.out
    assert res.out.count("6 tiles, ") == 4  # europe and conus, both editions


def test_info_fits_80_columns_and_keeps_every_band(capsys, stores, monkeypatch) -> None:
    src, mini, _ = stores
    monkeypatch.setenv("COLUMNS", "80")
    tile = _europe_tile(src)
    res = run(capsys, "info", tile, "--edition", "miniset", "--data-dir", str(mini))
    assert res.code == 0 and not _fits(res.out), _fits(res.out)
    doc = json.loads(run(capsys, "info", tile, "--edition", "miniset", "--data-dir", str(mini),
                         "--json").out)  # fmt: skip
    words = {w.rstrip(",") for w in res.out.split()}
    joined = "".join(line.strip() for line in res.out.splitlines())
    for f in doc["files"]:
        assert f["path"] in joined
        assert set(f["bands"]) <= words
