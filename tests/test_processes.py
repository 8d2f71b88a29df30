"""Miniset downloads spread over processes (fetch/processes.py): the same files and counts as
one process, progress and failures merged, errors rebuilt, children that die with the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from dl_helpers import expected_files, local_files, serve, settings_for, source

from m3leo_cli.config import load_settings
from m3leo_cli.errors import HubConnectionError
from m3leo_cli.fetch import processes
from m3leo_cli.fetch.runner import DownloadSummary
from m3leo_cli.mirror.download import download
from m3leo_cli.progress import ProgressEvent
from m3leo_cli.selection import build_selection
from m3leo_cli.server import Faults

SEL = build_selection(edition="miniset", regions=["europe"], modalities=["gssic", "s1grd"])


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


@pytest.fixture(autouse=True)
def _small_runs_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "MIN_FILES_PER_PROCESS", {"fork": 1, "spawn": 1})  # small source


def test_two_processes_fetch_exactly_what_one_does(info, tmp_path) -> None:
    want = {**expected_files(info, "gssic"), **expected_files(info, "s1grd-2020")}
    events: list[ProgressEvent] = []
    with serve(info) as srv:
        one = download(settings_for(srv, tmp_path / "one", processes=1), SEL, workers=4)
        two = download(settings_for(srv, tmp_path / "two", processes=2), SEL, workers=4,
                       progress=events.append)  # fmt: skip
    assert isinstance(one, DownloadSummary) and isinstance(two, DownloadSummary)
    assert (two.downloaded, two.failed, two.bytes) == (one.downloaded, 0, one.bytes) == (
        len(want), 0, sum(len(b) for b in want.values()))  # fmt: skip
    assert local_files(tmp_path / "two") == local_files(tmp_path / "one") == want
    starts = [e for e in events if e.kind == "start" and e.phase == "download"]
    assert len(starts) == 1 and starts[0].total_files == len(want)  # one run, as callers see it
    assert sum(e.files for e in events if e.kind == "advance" and e.phase == "download") == len(
        want
    )
    assert not list((tmp_path / "two" / ".m3leo" / "runs").glob("*.json"))


def test_a_failure_in_a_child_is_reported_and_the_rest_finish(info, tmp_path) -> None:
    with serve(info) as srv:
        settings = settings_for(srv, tmp_path, processes=2, max_retries=1)
        download(settings, SEL, dry_run=True)  # the catalog from a healthy server
        srv.faults = Faults(corrupt_first=10)  # then every file corrupt 10 times: gives up
        res = download(settings, SEL, workers=2)
    assert isinstance(res, DownloadSummary)
    assert res.failed == len(res.failures) > 0 and res.report_path is not None


def test_a_fatal_error_in_a_child_is_the_same_error_here(info, tmp_path) -> None:
    with serve(info) as srv:
        settings = settings_for(srv, tmp_path, processes=2)
        download(settings, SEL, dry_run=True)  # catalogue while the server is up
    started = time.monotonic()
    with pytest.raises(HubConnectionError) as exc:
        download(settings, SEL, workers=2)  # the server is gone
    assert exc.value.hint and time.monotonic() - started < 30


def test_children_die_with_a_killed_parent(info, tmp_path) -> None:
    marker = uuid.uuid4().hex
    with serve(info, Faults(latency_ms=300)) as srv:
        env = {**os.environ, "HF_ENDPOINT": srv.url, "M3LEO_DATA_DIR": str(tmp_path),
               "M3LEO_PROCESSES": "2", "M3LEO_TEST_MARKER": marker}  # fmt: skip
        code = ("from m3leo_cli.fetch import processes; "
                "processes.MIN_FILES_PER_PROCESS = {'fork': 1, 'spawn': 1}; "
                "from m3leo_cli.cli import main; main(['download', '--edition', 'miniset', "
                "'--region', 'europe', '-m', 'gssic', '-m', 's1grd', '-q'])")  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-c", code], env=env)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(_marked(marker)) < 3:
                time.sleep(0.05)
            assert len(_marked(marker)) >= 3, "the parent and its two children"
            # the command runs no other thread: its children are forks of it, not fresh
            # interpreters (which would run multiprocessing's spawn_main)
            assert not any(b"spawn_main" in _cmdline(pid) for pid in _marked(marker))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _marked(marker):
            time.sleep(0.05)
    assert _marked(marker) == [], "no download process outlives its parent"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_children_are_forked_only_from_a_process_with_no_other_thread() -> None:
    """A fork copies the locks other threads hold (the console's, a logger's): with another
    thread running, children are spawned instead."""
    code = ("import threading, sys; from m3leo_cli.fetch.processes import start_method; "
            "a = start_method(); e = threading.Event(); "
            "t = threading.Thread(target=e.wait); t.start(); b = start_method(); e.set(); "
            "t.join(); print(a, b, start_method())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    want = "fork spawn fork" if sys.platform.startswith("linux") else "spawn spawn spawn"
    assert out.stdout.split() == want.split()


def _marked(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if f"M3LEO_TEST_MARKER={marker}".encode() in (d / "environ").read_bytes():
                state = (d / "stat").read_text().split(")")[-1].split()[0]
                if state != "Z":
                    out.append(int(d.name))
        except OSError:
            continue
    return out


def test_errors_cross_process_boundaries_as_themselves() -> None:
    """Download processes and Dask workers send errors back pickled: every M3leoError comes
    back as its own class with its message and hint, whatever its __init__ takes."""
    import pickle

    from m3leo_cli.errors import DaskSchedulerError, MissingDependencyError, UnknownModalityError

    for exc in (MissingDependencyError("s3fs", "dask"), DaskSchedulerError("tcp://h:1", "no"),
                UnknownModalityError("sar2", ["sar"])):  # fmt: skip
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc)
        assert (back.message, back.hint, back.exit_code) == (exc.message, exc.hint, exc.exit_code)


def test_processes_follow_the_cores_this_run_may_use_with_a_few_transfers_each(
    tmp_path, monkeypatch
) -> None:
    """Unset, the processes are the cores this process may run on (its affinity: a cluster
    job's share), never so many that one gets fewer than 4 transfers; set, they are as set."""
    monkeypatch.setattr(processes, "MIN_FILES_PER_PROCESS", {"fork": 512, "spawn": 512})
    auto = load_settings({"data_dir": tmp_path}, env={})
    cores = processes.usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    plenty = 1_000_000
    assert processes.plan_processes(auto, plenty, 16) == min(cores, 4)
    assert processes.plan_processes(auto, plenty, 1) == 1
    assert processes.plan_processes(auto, 3, 16) == 1  # 3 files: below MIN_FILES_PER_PROCESS
    fixed = load_settings({"data_dir": tmp_path, "processes": 3}, env={})
    assert processes.plan_processes(fixed, plenty, 2) == 3  # as set, even with 2 transfers


def test_one_worker_still_gets_its_links_by_the_hundred(info, tmp_path) -> None:
    with serve(info) as srv:
        settings = settings_for(srv, tmp_path, processes=1)
        download(settings, SEL, dry_run=True)
        srv.clear_log()
        res = download(settings, SEL, workers=1)
        log = list(srv.log)
    assert isinstance(res, DownloadSummary) and res.failed == 0
    batches = [r for r in log if r.path.endswith("/info/lfs/objects/batch")]
    lfs_resolves = [r for r in log if "/resolve/" in r.path and r.path.endswith((".tif", ".nc"))]
    assert batches and lfs_resolves == []
