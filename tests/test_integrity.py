"""Integrity on read (issue 27 finding 2): a stored file changed since m3leo wrote it is refused
by every reader (export, stats --bands, show, the training dataset), not only by `verify`."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from clirun import run

from m3leo_cli.cli import main
from m3leo_cli.errors import CorruptTileError
from m3leo_cli.server import HubServer
from m3leo_cli.store import integrity
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source
from m3leo_cli.tiles.integrity import check_intact
from m3leo_cli.tiles.reader import read_tile

SEL = ("--edition", "miniset", "--region", "europe")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    cfg = SynthConfig(editions=("miniset",), tiles=6, chip_px=16, native_shape=(4, 5))
    return write_source(tmp_path_factory.mktemp("integrity-src"), cfg)


@pytest.fixture(scope="module")
def downloaded(source: SourceInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = tmp_path_factory.mktemp("integrity-store")
    with HubServer(source.root) as srv, pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(("M3LEO_", "HF_")):
                mp.delenv(var)
        mp.setenv("HF_HOME", str(template / ".hf"))
        mp.setenv("M3LEO_CONFIG", os.devnull)
        mp.setenv("M3LEO_DATA_DIR", str(template / "data"))
        mp.setenv("HF_ENDPOINT", srv.url)
        assert main(["download", *SEL, "-m", "s1grd", "-m", "gssic"]) == 0
    return template / "data"


@pytest.fixture
def store(source: SourceInfo, downloaded: Path, data_dir: Path) -> SourceInfo:
    shutil.copytree(downloaded, data_dir, dirs_exist_ok=True)  # copy2: mtimes kept
    return source


def _tile(store: SourceInfo, data_dir: Path, datakind: str = "s1grd-2020") -> tuple[str, Path]:
    repo = store.repo("miniset", "europe")
    tile = sorted(t for t in repo.tiles if repo.split_of(t) == "train")[0]  # stats --bands: train
    return tile, data_dir / "miniset" / "europe" / repo.tile_path(datakind, tile)


def _damaged(data: bytes) -> bytes:
    """The last 8 bytes inverted: other bytes of the same size."""
    return data[:-8] + bytes(b ^ 0xFF for b in data[-8:])


def _flip_a_bit_that_still_decodes(path: Path) -> None:
    """The finding's damage: one flipped bit in pixel data, which rasterio reads without a word."""
    import rasterio

    good = rasterio.open(path).read()
    data = bytearray(path.read_bytes())
    for offset in range(len(data) - 1, len(data) // 4, -1):
        bad = bytearray(data)
        bad[offset] ^= 0x10
        path.write_bytes(bad)
        try:
            with rasterio.open(path) as src:
                if not np.array_equal(src.read(), good):
                    return
        except Exception:  # noqa: BLE001 - that offset broke the header: try another
            continue
    raise AssertionError("no offset decodes differently")


def test_downloads_record_size_mtime_and_sha256(store: SourceInfo, data_dir: Path) -> None:
    _, path = _tile(store, data_dir)
    rec = integrity.lookup(integrity.place_of(path))
    st = path.stat()
    assert rec is not None and rec.matches(st)
    import hashlib

    assert rec.sha256 == hashlib.sha256(path.read_bytes()).digest()
    db = data_dir / ".m3leo" / "integrity" / "miniset" / "europe.sqlite"
    with sqlite3.connect(db) as conn:  # one row per downloaded file
        assert conn.execute("SELECT count(*) FROM files").fetchone()[0] >= 12


def test_a_damaged_tile_is_refused_by_export_stats_and_show(
    store: SourceInfo, tmp_path: Path, capsys, data_dir: Path
) -> None:
    tile, path = _tile(store, data_dir)
    _flip_a_bit_that_still_decodes(path)
    repair = (
        "m3leo verify --repair --edition miniset --region europe --modality s1grd-2020 "
        f"--tiles {tile}"
    )

    out = tmp_path / "k1"
    res = run(capsys, "export", "-f", "npz", "-o", str(out), *SEL, "-m", "s1grd")
    assert res.code == 1
    assert "changed since it was written" in res.err and repair in res.err
    assert not [p for p in out.rglob("*.npz") if tile in p.name]  # the damaged values: not written

    res = run(capsys, "stats", "--bands", *SEL, "-m", "s1grd", "--stats", str(tmp_path / "k2.json"))
    assert (
        res.code == 1 and "changed since it was written" in res.err and "verify --repair" in res.err
    )
    assert not (tmp_path / "k2.json").exists()  # no statistics saved for --normalize

    res = run(capsys, "show", tile, *SEL, "-m", "s1grd", "--out", str(tmp_path / "t.png"))
    assert res.code == 1 and "changed since it was written" in res.err and repair in res.err

    with pytest.raises(CorruptTileError):
        read_tile(path, "s1grd-2020")


def test_without_a_record_the_manifest_sha256_is_the_reference(
    store: SourceInfo, tmp_path: Path, capsys, data_dir: Path
) -> None:
    """A store downloaded before records existed: a read re-hashes against the manifest, records
    an intact file (the next read costs one stat) and refuses a damaged one."""
    shutil.rmtree(data_dir / ".m3leo" / "integrity")
    tile, path = _tile(store, data_dir)
    check_intact(path)  # intact: re-hashed once, then recorded
    assert integrity.lookup(integrity.place_of(path)).matches(path.stat())
    _, other = _tile(store, data_dir, "gssic")
    other.write_bytes(_damaged(other.read_bytes()))  # no record for it: manifest sha256
    (data_dir / ".m3leo" / "integrity" / "miniset" / "europe.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (data_dir / ".m3leo" / "integrity" / f"miniset/europe.sqlite{suffix}").unlink(
            missing_ok=True
        )
    with pytest.raises(CorruptTileError, match="differs from the manifest"):
        check_intact(other)


def test_an_edit_that_keeps_the_bytes_is_not_refused(store: SourceInfo, data_dir: Path) -> None:
    """`touch` (or a copy that does not keep mtimes) costs one re-hash, never a refusal."""
    _, path = _tile(store, data_dir)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 5_000_000_000))
    check_intact(path)
    assert integrity.lookup(integrity.place_of(path)).matches(path.stat())  # renewed


def test_verify_repair_makes_a_refused_tile_readable_again(
    store: SourceInfo, tmp_path: Path, capsys, data_dir: Path, monkeypatch
) -> None:
    tile, path = _tile(store, data_dir)
    _flip_a_bit_that_still_decodes(path)
    with pytest.raises(CorruptTileError) as info:
        read_tile(path, "s1grd-2020")
    command = info.value.hint.split("`")[1]
    with HubServer(store.root) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        res = run(capsys, *command.split()[1:], "--quiet")
        assert res.code == 0, res.err
    read_tile(path, "s1grd-2020")


def test_the_training_dataset_refuses_a_damaged_tile(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> None:
    """Both paths of the dataset: read_tile, and the fast netCDF reader after the first tile."""
    pytest.importorskip("torch", reason="needs the train extra: pip install '.[train]'")
    from train_source import install, train_store

    from m3leo_cli.train.dataset import StoreDataset
    from m3leo_cli.train.layers import DataSpec, InputSpec, TargetSpec

    _, template = train_store(tmp_path_factory)
    install(template, data_dir)
    coh = tuple(f"coherence:{s}:36" for s in ("winter", "spring", "summer", "fall"))
    target = TargetSpec("biomass-2020", "agb", "regression")
    data = DataSpec((InputSpec("gssic", coh),), target, 16, normalize=False, regions=("europe",))
    ds = StoreDataset(data, "train")
    assert len(ds) >= 2
    ds[0]  # the first gssic tile builds the fast reader's plan
    nc = ds.plan.samples[1].files["gssic"].path
    nc.write_bytes(_damaged(nc.read_bytes()))
    with pytest.raises(CorruptTileError, match="changed since it was written") as info:
        ds[1]
    assert "m3leo verify --repair --edition miniset --region europe --modality gssic" in (
        info.value.hint
    )
    tif = ds.plan.samples[0].files["biomass-2020"].path
    tif.write_bytes(_damaged(tif.read_bytes()))
    with pytest.raises(CorruptTileError, match="changed since it was written"):
        ds[0]
    # a DataLoader's batched fetch (``__getitems__``) reads through the same checks
    with pytest.raises(CorruptTileError, match="changed since it was written"):
        ds.__getitems__([0])
    with pytest.raises(CorruptTileError, match="changed since it was written"):
        ds.__getitems__([1])


def test_verify_repair_with_a_folder_in_a_files_place_repairs_the_rest(
    store: SourceInfo, capsys, data_dir: Path, monkeypatch
) -> None:
    """Issue 27 finding 20: the folder aborted the whole repair ("check that the folder exists
    and is writable"); now the other files are repaired and that one is reported."""
    repo = store.repo("miniset", "europe")
    first, second = sorted(repo.tiles)[:2]
    folder = data_dir / "miniset" / "europe" / repo.tile_path("s1grd-2020", first)
    folder.unlink()
    folder.mkdir()
    damaged = data_dir / "miniset" / "europe" / repo.tile_path("s1grd-2020", second)
    good = damaged.read_bytes()
    damaged.write_bytes(good[:100])
    with HubServer(store.root) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        res = run(capsys, "verify", *SEL, "-m", "s1grd", "--repair")
    assert res.code == 1
    assert "Traceback" not in res.err
    assert "0 missing, 1 corrupt, 1 refused" in res.err
    assert f"refused miniset/europe/{repo.tile_path('s1grd-2020', first)}: a folder is in" in (
        res.err
    )
    assert "repair: downloaded 1, failed 0" in res.err
    assert "Error: 1 selected file(s) could not be checked or repaired" in res.err
    assert "hint: move away what stands in those files' places" in res.err
    assert damaged.read_bytes() == good and folder.is_dir()


def _record_many(root: str, worker: int, n: int) -> None:
    from m3leo_cli.store import integrity as rec

    folder = Path(root) / "miniset" / "europe" / "p" / f"dk{worker}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = folder / f"{i:013x}.tif"
        f.write_bytes(f"{worker}-{i}".encode())
        rec.record(f, bytes([worker]) * 32)


def test_records_from_concurrent_processes_all_land(tmp_path: Path) -> None:
    """Several writers (download processes, unpack threads) share one record through SQLite's
    locks: none is lost, none is torn."""
    import multiprocessing

    (tmp_path / ".m3leo").mkdir()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_record_many, args=(str(tmp_path), w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    for w in range(4):
        for i in range(60):
            f = tmp_path / "miniset" / "europe" / "p" / f"dk{w}" / f"{i:013x}.tif"
            got = integrity.lookup(integrity.place_of(f))
            assert got is not None and got.matches(f.stat()) and got.sha256 == bytes([w]) * 32


def test_a_writer_killed_mid_run_leaves_a_readable_record(tmp_path: Path) -> None:
    """SIGKILL while recording: every record committed before the kill is there, the
    database is intact, and the next writer goes on."""
    import signal
    import subprocess
    import sys

    (tmp_path / ".m3leo").mkdir()
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_integrity import _record_many\n"
        f"_record_many({str(tmp_path)!r}, 0, 50)\n"
        "from m3leo_cli.store.integrity import flush; flush(); print('half', flush=True)\n"
        f"_record_many({str(tmp_path)!r}, 1, 100000)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "half"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    db = tmp_path / ".m3leo" / "integrity" / "miniset" / "europe.sqlite"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for i in range(50):
        f = tmp_path / "miniset" / "europe" / "p" / "dk0" / f"{i:013x}.tif"
        assert integrity.lookup(integrity.place_of(f)).matches(f.stat())
    _record_many(str(tmp_path), 2, 5)  # the next writer
    f = tmp_path / "miniset" / "europe" / "p" / "dk2" / f"{4:013x}.tif"
    assert integrity.lookup(integrity.place_of(f)) is not None


def test_a_damaged_record_is_set_aside_and_started_again(store: SourceInfo, data_dir: Path) -> None:
    """The record is a cache: a database that is not one any more (power lost mid-write) costs
    re-hashes against the manifest, never a failed read."""
    tile, path = _tile(store, data_dir)
    db = data_dir / ".m3leo" / "integrity" / "miniset" / "europe.sqlite"
    for extra in db.parent.glob("europe.sqlite-*"):
        extra.unlink()
    db.write_bytes(b"this is not a database" * 200)
    check_intact(path)  # re-hashed against the manifest, then recorded in a new database
    assert db.with_name("europe.sqlite.damaged").exists()
    assert integrity.lookup(integrity.place_of(path)).matches(path.stat())
    path.write_bytes(_damaged(path.read_bytes()))
    with pytest.raises(CorruptTileError):
        check_intact(path)


def test_files_downloaded_by_child_processes_are_recorded(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records are buffered per process: a download's child processes write theirs when they
    finish, so every file of a two-process download has its record."""
    from dl_helpers import expected_files, serve, settings_for
    from dl_helpers import source as dl_source

    from m3leo_cli.fetch import processes
    from m3leo_cli.mirror.download import download
    from m3leo_cli.selection import build_selection

    monkeypatch.setattr(processes, "MIN_FILES_PER_PROCESS", {"fork": 1, "spawn": 1})
    info = dl_source(tmp_path_factory)
    sel = build_selection(edition="miniset", regions=["europe"], modalities=["gssic", "s1grd"])
    with serve(info) as srv:
        res = download(settings_for(srv, tmp_path, processes=2), sel, workers=4)
    want = {**expected_files(info, "gssic"), **expected_files(info, "s1grd-2020")}
    assert res.downloaded == len(want) > 0
    import hashlib

    for rel, body in want.items():
        f = tmp_path / "miniset" / "europe" / rel
        got = integrity.lookup(integrity.place_of(f))
        assert got is not None and got.matches(f.stat()), rel
        if rel.endswith((".tif", ".nc")):  # LFS files: sha256 (small text files: git sha1)
            assert got.sha256 == hashlib.sha256(body).digest()
