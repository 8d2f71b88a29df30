"""Durability without an fsync per file: the run journal (store/journal.py), as downloads use it.

A download renames files into place without fsync and syncs the filesystem at checkpoints and
at its end; a run that never finished leaves its marker, and the next run re-hashes every file
that run may have written before trusting it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from dl_helpers import expected_files, file_requests, local_files, serve, settings_for, source

from m3leo_cli.fetch.runner import DownloadSummary
from m3leo_cli.mirror.download import download
from m3leo_cli.mirror.verify import verify
from m3leo_cli.selection import build_selection
from m3leo_cli.store import journal
from m3leo_cli.store.journal import RunJournal, Suspicion, load_suspects
from m3leo_cli.store.layout import Store

SEL = build_selection(edition="miniset", regions=["europe"], modalities=["gssic"])


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


def _get(srv, data_dir: Path) -> DownloadSummary:  # type: ignore[no-untyped-def]
    res = download(settings_for(srv, data_dir), SEL, workers=4)
    assert isinstance(res, DownloadSummary)
    return res


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: a size check alone would trust it
    path.write_bytes(bytes(data))


def test_a_download_fsyncs_no_file_and_syncs_once(info, tmp_path, monkeypatch) -> None:
    calls = {"fsync": 0, "sync": 0}
    real_fsync = os.fsync
    fsynced: list[str] = []

    def fsync(fd: int) -> None:
        calls["fsync"] += 1
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "sync", lambda: calls.__setitem__("sync", calls["sync"] + 1))
    real_sync_store, synced = journal.sync_store, []

    def sync_store(store: Store) -> list[Path]:
        synced.append(real_sync_store(store))
        return synced[-1]

    monkeypatch.setattr(journal, "sync_store", sync_store)
    want = expected_files(info, "gssic")
    with serve(info) as srv:
        ensure = _get(srv, tmp_path)  # the first run also writes the manifest (fsynced)
        for p in local_files(tmp_path):
            (tmp_path / "miniset" / "europe" / p).unlink()
        calls.update(fsync=0, sync=0)
        synced.clear()
        fsynced.clear()
        s = _get(srv, tmp_path)
    assert ensure.downloaded == s.downloaded == len(want)
    # one sync at the end of the run: syncfs of the store's own filesystem, never sync(2) of
    # every filesystem the machine has mounted (a cluster node's shared ones included)
    assert synced == [[tmp_path]] and calls["sync"] == 0
    assert calls["fsync"] <= 4 < len(want)  # the run marker only, never one per file
    runs = str(tmp_path / ".m3leo" / "runs")
    assert any(p.startswith(runs + "/") for p in fsynced) and runs in fsynced  # file and folder
    assert not list((tmp_path / ".m3leo" / "runs").glob("*.json"))  # a clean end: no marker
    assert local_files(tmp_path) == want


def test_files_of_a_run_that_never_finished_are_rehashed_before_they_are_trusted(
    info, tmp_path
) -> None:
    want = expected_files(info, "gssic")
    base = tmp_path / "miniset" / "europe"
    with serve(info) as srv:
        _get(srv, tmp_path)
        store = Store(tmp_path)
        names = sorted(want)
        older, newer = base / names[0], base / names[1]
        _flip(older)
        past = time.time() - 3600
        os.utime(older, (past, past))  # damaged long before the crashed run began
        crashed = RunJournal(store)
        crashed.__enter__()  # a run starts, then the machine stops: no __exit__, marker stays
        time.sleep(0.05)
        _flip(newer)  # a file that run "wrote" and never synced
        assert Suspicion(store)(newer) and not Suspicion(store)(older)
        srv.clear_log()
        again = _get(srv, tmp_path)
        fetched = file_requests(srv)
    # the suspect is re-hashed, found wrong and fetched again; every other file is only
    # re-hashed (no request); the old damage is not the journal's business: verify finds it
    assert again.downloaded == 1 and again.failed == 0
    assert {Path(r.path).name for r in fetched} == {Path(names[1]).name}
    assert newer.read_bytes() == want[names[1]]
    assert not list((tmp_path / ".m3leo" / "runs").glob("*.json"))
    assert load_suspects(store) == set()  # all checked or rewritten, and synced
    rep = verify(settings_for(srv, tmp_path), SEL)
    assert [Path(p).name for p in rep.corrupt] == [Path(names[0]).name]


def test_suspects_outside_the_selection_wait_for_a_run_that_covers_them(info, tmp_path) -> None:
    with serve(info) as srv:
        _get(srv, tmp_path)
        store = Store(tmp_path)
        stray = tmp_path / "miniset" / "europe" / "elsewhere.tif"
        crashed = RunJournal(store)
        crashed.__enter__()
        time.sleep(0.05)
        stray.write_bytes(b"half")
        _get(srv, tmp_path)  # gssic only: the stray file is not in this selection
    assert "miniset/europe/elsewhere.tif" in load_suspects(store)


def test_writeback_is_asked_for_without_failing_anything(tmp_path) -> None:
    """start_writeback never waits and never fails a download: a file, a range, a pipe (which
    refuses it) and the bytes stay as written."""
    path = tmp_path / "f.bin"
    data = os.urandom(3 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        journal.start_writeback(fd, 0, 1 << 20)
        journal.start_writeback(fd, 1 << 20)  # to the end
    finally:
        os.close(fd)
    r, w = os.pipe()
    try:
        journal.start_writeback(w, 0)  # ESPIPE: ignored
    finally:
        os.close(r)
        os.close(w)
    assert path.read_bytes() == data


def test_a_region_folder_linked_to_another_filesystem_is_synced_too(tmp_path) -> None:
    """An edition or region folder linked to another disk holds files the run wrote: its
    filesystem is synced along with the store's (or everything is, with sync(2))."""
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second filesystem: /dev/shm (tmpfs) is not one here")
    target = Path(tempfile.mkdtemp(dir=other))
    try:
        (tmp_path / "miniset").mkdir()
        (tmp_path / "miniset" / "europe").symlink_to(target, target_is_directory=True)
        synced = journal.sync_store(Store(tmp_path))
        devices = {os.stat(p).st_dev for p in synced}
        assert synced == [] or devices == {os.stat(tmp_path).st_dev, os.stat(target).st_dev}
    finally:
        shutil.rmtree(target)
