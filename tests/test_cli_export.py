"""`m3leo export` end to end: download from the loopback Hub, export, read back; bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from clirun import run
from export_source import read_webdataset

from m3leo_cli.cli import main
from m3leo_cli.server import HubServer
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source
from m3leo_cli.tiles.reader import read_tile

SEL = ("--edition", "miniset", "--region", "europe")
LAYERS = ("--modality", "s1grd", "--modality", "gssic", "--label", "esaworldcover")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    cfg = SynthConfig(editions=("miniset",), tiles=8, chip_px=16, native_shape=(4, 5))
    return write_source(tmp_path_factory.mktemp("cli-export-src"), cfg)


@pytest.fixture(scope="module")
def downloaded(source: SourceInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding s1grd, gssic and esaworldcover, downloaded once from the loopback Hub."""
    template = tmp_path_factory.mktemp("export-store")
    with HubServer(source.root) as srv, pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):  # the same isolation conftest gives every test
            if var.startswith(("M3LEO_", "HF_")):
                mp.delenv(var)
        mp.setenv("HF_HOME", str(template / ".hf"))
        mp.setenv("M3LEO_CONFIG", os.devnull)
        mp.setenv("M3LEO_DATA_DIR", str(template / "data"))
        mp.setenv("HF_ENDPOINT", srv.url)
        code = main(["download", *SEL, "-m", "s1grd", "-m", "gssic", "-m", "esaworldcover"])
        assert code == 0
    return template / "data"


@pytest.fixture
def store(source: SourceInfo, downloaded: Path, data_dir: Path) -> SourceInfo:
    """This test's own copy of the downloaded store (tests may damage it)."""
    shutil.copytree(downloaded, data_dir, dirs_exist_ok=True)
    return source


def test_export_webdataset_end_to_end(store: SourceInfo, tmp_path: Path, capsys, data_dir) -> None:
    out = tmp_path / "ds"
    res = run(capsys, "export", "--format", "webdataset", "--out", str(out), *SEL, *LAYERS,
              "--shard-size", "2", "--json")  # fmt: skip
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    repo = store.repo("miniset", "europe")
    lacking = repo.missing("gssic")
    assert summary["written"] == len(repo.tiles) - len(lacking)
    assert summary["skipped_missing_layer"] == {"gssic": len(lacking)}
    assert summary["complete"] and summary["failed"] == []
    meta = json.loads((out / "metadata.json").read_text())
    command = meta["provenance"]["command"]
    assert command[:6] == ["m3leo", "export", "--format", "webdataset", "--out", str(out)]
    assert "--modality" in command and "--label" in command and "--json" in command
    assert meta["provenance"]["regions"]["europe"] == repo_commit(data_dir)
    assert {lay["name"]: lay["role"] for lay in meta["layers"]} == {
        "s1grd-2020": "input", "gssic": "input", "esaworldcover-2020": "label",
    }  # fmt: skip
    n = 0
    for split in ("train", "val", "test"):
        urls = sorted(str(p) for p in (out / split).glob("*.tar"))
        for s in read_webdataset(urls):
            tid = s["__key__"]
            assert repo.split_of(tid) == split
            path = data_dir / "miniset" / "europe" / repo.tile_path("gssic", tid)
            np.testing.assert_array_equal(s["gssic.npy"], read_tile(path, "gssic").data)
            n += 1
    assert n == summary["written"]


def repo_commit(data_dir: Path) -> str:
    import pyarrow.parquet as pq

    path = data_dir / "manifest" / "edition=miniset" / "region=europe" / "manifest.parquet"
    return pq.read_table(path, columns=["commit"])["commit"][0].as_py()


def test_rerun_completes_and_partitions(store: SourceInfo, tmp_path: Path, capsys) -> None:
    out = tmp_path / "p"
    for i in (0, 1):
        res = run(capsys, "export", "-f", "parquet", "-o", str(out), *SEL, *LAYERS,
                  "--shard-size", "1", "--num-shards", "2", "--shard-index", str(i))  # fmt: skip
        assert res.code == 0, res.err
    assert "exported" in res.err and (out / "metadata.json").exists()
    res = run(capsys, "export", "-f", "parquet", "-o", str(out), *SEL, *LAYERS,
              "--shard-size", "1", "--json")  # fmt: skip
    summary = json.loads(res.out)
    assert res.code == 0 and summary["units_written"] == 0 and summary["units_skipped"] > 0


@pytest.mark.parametrize(
    ("args", "code", "message", "hint"),
    [  # usage mistakes exit 2, a valid request this store cannot serve exits 1
        (("-f", "hdf5"), 2, "unknown format 'hdf5'", "npz, webdataset, parquet, geotiff, zarr"),
        (("-f", "npz", "-m", "gunw"), 1, "region europe has no gunw datakind", "m3leo modalities"),
        (("-f", "npz", "-m", "s1grd", "-m", "biomass"), 1,
         "no tile has every requested layer: biomass-2020 not downloaded on 8 of 8 tiles",
         "m3leo download --edition miniset --region europe --modality biomass-2020"),
        (("-f", "npz", "-m", "s1grd", "--normalize"), 1, "no saved band statistics",
         "m3leo stats --bands --edition miniset --region europe --split train "
         "--modality s1grd-2020"),
        (("-f", "geotiff", "-m", "s1grd", "--resample", "8"), 2,
         "--format geotiff copies the original files", "--format npz"),
        (("-f", "npz", "-m", "s1grd", "--num-shards", "2", "--shard-index", "5"), 2,
         "--shard-index 5 is outside 0..1", "SLURM_ARRAY_TASK_ID"),
        (("-f", "npz", "-m", "s1grd", "--num-shards", "0"), 2,
         "--num-shards must be at least 1, not 0", "--num-shards K"),
        (("-f", "npz", "-m", "s1grd", "--dtype", "uint8"), 2,
         "--dtype uint8 cannot hold the decoded values of s1grd-2020", "--dtype float32"),
        (("-f", "npz"), 2, "name at least one layer", "--modality"),
    ],
)  # fmt: skip
def test_bad_input(store: SourceInfo, tmp_path: Path, capsys, args, code, message, hint) -> None:
    res = run(capsys, "export", "-o", str(tmp_path / "o"), *SEL, *args)
    assert res.code == code, res.err
    assert f"Error: {message}" in res.err, res.err
    assert "hint: " in res.err and hint in res.err


def test_out_that_is_a_file_does_not_suggest_overwrite(
    store: SourceInfo, tmp_path: Path, capsys
) -> None:
    """Issue 12 item 8: --out FILE suggested --overwrite, which failed the same way."""
    f = tmp_path / "out.npz"
    f.write_text("mine")
    for extra in ((), ("--overwrite",)):
        res = run(capsys, "export", "-f", "npz", "-o", str(f), *SEL, "-m", "s1grd", *extra)
        assert res.code == 1 and "is a file, not a folder" in res.err
        assert "--overwrite" not in res.err and "hint: give --out a new or empty folder" in res.err
    assert f.read_text() == "mine"


def test_foreign_output_folder_is_refused(store: SourceInfo, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *SEL, "-m", "s1grd")
    assert res.code == 1
    assert "Error: --out" in res.err and "not an m3leo export" in res.err
    assert "hint: choose a new or empty --out folder, or pass --overwrite" in res.err


def test_corrupt_tile_exit_1_at_the_end(
    store: SourceInfo, tmp_path: Path, capsys, data_dir
) -> None:
    repo = store.repo("miniset", "europe")
    victim = sorted(repo.tiles)[0]
    path = data_dir / "miniset" / "europe" / repo.tile_path("s1grd-2020", victim)
    path.write_bytes(path.read_bytes()[:100])
    out = tmp_path / "o"
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *SEL, "-m", "s1grd")
    assert res.code == 1
    assert f"failed {repo.split_of(victim)}/{victim}" in res.err
    assert "Error: 1 tile(s) could not be read" in res.err and "verify --repair" in res.err
    assert len(list(out.rglob("*.npz"))) == len(repo.tiles) - 1


def test_normalize_with_saved_stats(store: SourceInfo, tmp_path: Path, capsys, data_dir) -> None:
    res = run(capsys, "stats", "--bands", *SEL, "-m", "gssic")
    assert res.code == 0, res.err
    out = tmp_path / "n"
    res = run(
        capsys,
        "export",
        "-f",
        "npz",
        "-o",
        str(out),
        *SEL,
        "-m",
        "gssic",
        "--normalize",
        "--split",
        "train",
    )  # fmt: skip  (statistics are the train split's)
    assert res.code == 0, res.err
    meta = json.loads((out / "metadata.json").read_text())
    assert set(meta["normalization"]) == {"gssic"}
    stacked = []
    for f in sorted(out.rglob("*.npz")):
        with np.load(f) as z:
            assert z["gssic"].dtype == np.float32
            stacked.append(z["gssic"])
    allv = np.stack(stacked)
    means = np.nanmean(allv, axis=(0, 2, 3))
    assert np.all(np.abs(means) < 1e-3)  # the stats came from exactly these tiles


def test_normalize_and_dtype_never_touch_the_label(
    store: SourceInfo, tmp_path: Path, capsys
) -> None:
    """Issue 12 item 1: --normalize turned ESA WorldCover codes into float16 -1.37..1.67."""
    from m3leo_cli import spec

    res = run(capsys, "stats", "--bands", *SEL, "-m", "gssic")  # no stats for the label needed
    assert res.code == 0, res.err
    out = tmp_path / "n"
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *SEL, "-m", "gssic",
              "--label", "esaworldcover", "--normalize", "--dtype", "float16")  # fmt: skip
    assert res.code == 0, res.err
    for f in sorted(out.rglob("*.npz")):
        with np.load(f) as z:
            assert z["gssic"].dtype == np.float16
            wc = z["esaworldcover-2020"]
            assert wc.dtype == np.uint8
            assert set(np.unique(wc)) <= set(spec.ESA_WORLDCOVER_CLASSES) | {0}
    meta = json.loads((out / "metadata.json").read_text())
    layers = {lay["name"]: lay for lay in meta["layers"]}
    assert layers["esaworldcover-2020"]["normalized"] is False
    assert layers["esaworldcover-2020"]["values"] == "stored"
    assert layers["gssic"]["values"] == "normalized" and layers["gssic"]["cast"] == "float16"
    assert set(meta["normalization"]) == {"gssic"}


def test_band_stats_of_a_store_that_cannot_be_written_go_to_the_user_cache(
    store: SourceInfo, tmp_path: Path, capsys, data_dir: Path
) -> None:
    """Issue 12 item 6: on a read-only store `stats --bands` computed, failed to save and
    printed nothing, so --normalize was impossible. (Tests run as root, which ignores
    permission bits: the stats folder is made unwritable by a file standing in its place.)"""
    blocker = data_dir / ".m3leo" / "stats"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    res = run(capsys, "stats", "--bands", *SEL, "-m", "gssic")
    assert res.code == 0, res.err
    assert "  winter:vv" in res.out  # the table is printed
    assert "the store cannot be written: the user cache" in res.err
    cached = list((Path(os.environ["M3LEO_CACHE_DIR"]) / "stats").rglob("bands-miniset.json"))
    assert len(cached) == 1 and "gssic" in cached[0].read_text()
    out = tmp_path / "n"
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *SEL, "-m", "gssic", "--normalize")
    assert res.code == 0, res.err
    assert set(json.loads((out / "metadata.json").read_text())["normalization"]) == {"gssic"}


def test_band_stats_table_fits_80_columns(store: SourceInfo, capsys, monkeypatch) -> None:
    """Issue 12 item 7: at 80-110 columns band names were cut to `wint…`, `amplit…`."""
    monkeypatch.setenv("COLUMNS", "80")
    res = run(capsys, "stats", "--bands", *SEL, "-m", "s1grd", "-m", "gssic", "-m", "esaworldcover")
    assert res.code == 0, res.err
    assert max(len(line) for line in res.out.splitlines()) <= 80 and "…" not in res.out
    for band in ("winter_vvasc", "amplitude", "  winter:vv", "decaymodel", "  spring:rmse", "Map"):
        assert f"\n{band} " in res.out
    assert "gssic: 38 bands" in res.out and "classes: Tree cover" in res.out


def test_stats_file_flag_carries_statistics_from_stats_to_export(
    store: SourceInfo, tmp_path: Path, capsys
) -> None:
    f = tmp_path / "my-stats.json"
    res = run(capsys, "stats", "--bands", *SEL, "-m", "gssic", "--stats", str(f), "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["saved_to"] == str(f) and f.is_file()
    out = tmp_path / "n"
    args = ("export", "-f", "npz", "-o", str(out), *SEL, "-m", "gssic", "--normalize")
    res = run(capsys, *args, "--stats", str(f))
    assert res.code == 0, res.err
    res = run(capsys, *args[:4], str(tmp_path / "m"), *args[5:], "--stats", str(tmp_path / "no"))
    assert res.code == 1 and "holds no m3leo band statistics" in res.err
    assert f"--stats {tmp_path / 'no'}" in res.err
    res = run(capsys, "stats", *SEL, "--stats", str(f))
    assert res.code == 2 and "--stats FILE goes with --bands" in res.err


def test_no_complete_sample_says_which_layer_is_missing_where(
    store: SourceInfo, tmp_path: Path, capsys
) -> None:
    repo = store.repo("miniset", "europe")
    lacking = repo.missing("gssic")[0]
    res = run(capsys, "export", "-f", "npz", "-o", str(tmp_path / "o"), *SEL,
              "-m", "s1grd", "-m", "gssic", "--tiles", lacking)  # fmt: skip
    assert res.code == 1
    assert (
        f"Error: no tile has every requested layer: gssic absent on 1 of 1 tiles (e.g. {lacking})"
        in res.err
    )
    assert "hint: pass --allow-missing" in res.err
    res = run(capsys, "export", "-f", "npz", "-o", str(tmp_path / "o"), *SEL,
              "-m", "s1grd", "-m", "gssic", "--tiles", lacking, "--allow-missing")  # fmt: skip
    assert res.code == 0, res.err
    assert len(list((tmp_path / "o").rglob("*.npz"))) == 1


def test_skip_lines_suggest_allow_missing_only_when_it_helps(
    store: SourceInfo, tmp_path: Path, capsys
) -> None:
    """Issue 12 item 8: with --allow-missing the report still said "pass --allow-missing"."""
    lacking = store.repo("miniset", "europe").missing("gssic")
    base = ("export", "-f", "npz", *SEL, "-m", "s1grd", "-m", "gssic")
    res = run(capsys, *base, "-o", str(tmp_path / "a"))
    assert res.code == 0, res.err
    assert f"skipped {len(lacking)} tiles lacking gssic (pass --allow-missing to keep the " in (
        res.err
    )
    res = run(capsys, *base, "-o", str(tmp_path / "b"), "--allow-missing")
    assert res.code == 0, res.err
    assert "--allow-missing" not in res.err
    res = run(capsys, "export", "-f", "npz", "-o", str(tmp_path / "d"), *SEL, "-m", "gssic",
              "--tiles", lacking[0], "--allow-missing")  # fmt: skip
    assert res.code == 1 and "--allow-missing" not in res.err.split("hint:")[1]


def test_the_hinted_repair_command_fixes_the_corrupt_tiles(
    store: SourceInfo, tmp_path: Path, capsys, data_dir, monkeypatch
) -> None:
    repo = store.repo("miniset", "europe")
    victims = sorted(repo.tiles)[:2]
    for t in victims:
        path = data_dir / "miniset" / "europe" / repo.tile_path("s1grd-2020", t)
        path.write_bytes(path.read_bytes()[:100])
    out = tmp_path / "o"
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *SEL, "-m", "s1grd")
    assert res.code == 1
    command = res.err.split("hint: run `", 1)[1].split("`", 1)[0]
    assert command == (
        "m3leo verify --repair --edition miniset --region europe --modality s1grd-2020 "
        f"--tiles {','.join(victims)}"
    )
    with HubServer(store.root) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        assert run(capsys, *command.split()[1:], "--quiet").code == 0
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *SEL, "-m", "s1grd")
    assert res.code == 0, res.err
    assert len(list(out.rglob("*.npz"))) == len(repo.tiles)


def test_the_same_layer_as_input_and_label_is_refused(
    store: SourceInfo, tmp_path: Path, capsys
) -> None:
    """Issue 27 finding 5: -m gssic --label gssic exported one "input" array, the label gone."""
    out = tmp_path / "m"
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *SEL, "-m", "gssic",
              "--label", "gssic")  # fmt: skip
    assert res.code == 2, res.err
    assert "Error: gssic is both an input (--modality gssic) and a label (--label gssic)" in (
        res.err
    )
    assert "hint: name gssic once: drop it from --modality or from --label" in res.err
    assert not out.exists()


def _store_file(store: SourceInfo, data_dir: Path, datakind: str, tile: str) -> Path:
    repo = store.repo("miniset", "europe")
    return data_dir / "miniset" / "europe" / repo.tile_path(datakind, tile)


def test_editing_a_geotiff_export_leaves_the_store_alone(
    store: SourceInfo, tmp_path: Path, capsys, data_dir
) -> None:
    """Issue 27 (data lost): exported files were hard links, so editing one edited the store."""
    import rasterio

    tile = sorted(store.repo("miniset", "europe").tiles)[0]
    src = _store_file(store, data_dir, "s1grd-2020", tile)
    before = src.read_bytes()
    out = tmp_path / "g"
    res = run(capsys, "export", "-f", "geotiff", "-o", str(out), *SEL, "-m", "s1grd",
              "--tiles", tile)  # fmt: skip
    assert res.code == 0, res.err
    (exported,) = out.rglob("*.tif")
    assert exported.stat().st_ino != src.stat().st_ino and exported.stat().st_nlink == 1
    with rasterio.open(exported, "r+") as d:  # what a GIS user does: set a nodata value
        d.nodata = 0
    assert exported.read_bytes() != before and src.read_bytes() == before
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["files_are"] == "copies"
    res = run(capsys, "verify", *SEL, "-m", "s1grd", "--tiles", tile)
    assert res.code == 0, res.err


def test_link_opts_into_hard_links_and_says_so(
    store: SourceInfo, tmp_path: Path, capsys, data_dir
) -> None:
    tile = sorted(store.repo("miniset", "europe").tiles)[0]
    src = _store_file(store, data_dir, "s1grd-2020", tile)
    out = tmp_path / "g"
    res = run(capsys, "export", "-f", "geotiff", "-o", str(out), *SEL, "-m", "s1grd",
              "--tiles", tile, "--link")  # fmt: skip
    assert res.code == 0, res.err
    (exported,) = out.rglob("*.tif")
    assert exported.stat().st_ino == src.stat().st_ino
    assert "hard links to the store" in res.err and "editing one edits the store" in res.err
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["files_are"] == "hard links to the store"
    res = run(capsys, "export", "-f", "npz", "-o", str(tmp_path / "n"), *SEL, "-m", "s1grd",
              "--link")  # fmt: skip
    assert res.code == 2 and "--link goes with --format geotiff" in res.err


def test_a_second_run_of_the_same_export_into_one_out_is_refused(
    store: SourceInfo, tmp_path: Path, capsys
) -> None:
    """Issue 27 finding 20: two identical exports into one --out at once both died on a .part
    file. The second run of a job is refused while the first holds its lock; jobs of one export
    (--shard-index) still run side by side."""
    from m3leo_cli.export.state import export_lock

    out = tmp_path / "o"
    args = ("export", "-f", "npz", "-o", str(out), *SEL, "-m", "s1grd")
    with export_lock(out, 0, 1):  # a first run, still writing
        res = run(capsys, *args)
        assert res.code == 1
        assert f"Error: --out {out} is being written by another run of this export (pid" in res.err
        assert "hint: let that run finish" in res.err
        assert not list(out.rglob("*.npz"))
        other = run(capsys, *args, "--num-shards", "2", "--shard-index", "1")  # another job
        assert other.code == 0, other.err
    res = run(capsys, *args)
    assert res.code == 0, res.err
    assert (out / "metadata.json").exists()


def test_a_tile_no_reader_can_open_is_that_samples_failure_and_the_rest_export(
    capsys, store: SourceInfo, data_dir: Path, tmp_path: Path
) -> None:
    """Issue 23 item 1 for exports: whatever a reader raises for one tile (here a valid HDF5
    file with none of gssic's variables in a tile's place) is that sample's counted failure;
    the other samples are written and the command exits 1."""
    import h5py

    nc = next((data_dir / "miniset" / "europe").rglob("gssic/*.nc"))
    nc.unlink()
    with h5py.File(nc, "w") as f:
        f["other"] = np.zeros(3)
    import hashlib

    from m3leo_cli.store.integrity import record

    record(nc, hashlib.sha256(nc.read_bytes()).digest())  # as if it had arrived like this
    out = tmp_path / "x"
    res = run(capsys, "export", *SEL, "-m", "gssic", "--format", "npz", "--out", str(out),
              "--json")  # fmt: skip
    assert res.code == 1, res.err
    doc = json.loads(res.out)
    assert len(doc["failed"]) == 1 and nc.stem in json.dumps(doc["failed"]), doc["failed"]
    assert "changed since" not in doc["failed"][0]["reason"], doc["failed"]  # the reader's own


def test_two_identical_exports_started_together_never_both_fail(
    store: SourceInfo, tmp_path: Path
) -> None:
    """The real race of finding 20: whichever gets the lock writes, the other is refused with
    the lock's message (or, started after, finds the export done); never a .part error."""
    import subprocess
    import sys

    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "m3leo_cli", "export", "-f", "npz", "-o", str(out), *SEL,
           "-m", "s1grd", "--quiet"]  # fmt: skip
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        if p.stderr:
            p.stderr.close()
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert ".part" not in err, err
        assert code == 0 or "is being written by another run of this export" in err, err
    assert (out / "metadata.json").exists()
