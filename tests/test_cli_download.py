"""`m3leo download`, `verify`, `clean` as a user runs them (in-process, and one real SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import run
from dl_helpers import PARTITION, expected_files, local_files, serve, source

from m3leo_cli.server import Faults
from m3leo_cli.store.layout import Store
from m3leo_cli.store.lock import store_lock

ARGS = ("--edition", "miniset", "--region", "europe", "--modality", "gssic")


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


@pytest.fixture
def srv(info, monkeypatch):  # type: ignore[no-untyped-def]
    with serve(info) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_download_json_summary_and_rerun(capsys, srv, info, data_dir):
    res = run(capsys, "download", *ARGS, "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    want = expected_files(info, "gssic")
    assert summary["downloaded"] == len(want) and summary["failed"] == 0
    assert all(isinstance(summary[k], int) for k in ("downloaded", "skipped", "failed", "bytes"))
    assert local_files(data_dir) == want
    res = run(capsys, "download", *ARGS, "--json")
    again = json.loads(res.out)
    assert (again["downloaded"], again["skipped"], again["bytes"]) == (0, len(want), 0)


def test_download_human_summary_and_dry_run(capsys, srv, info, data_dir):
    res = run(capsys, "download", *ARGS, "--dry-run")
    assert res.code == 0, res.err
    n = len(expected_files(info, "gssic"))
    assert f"to fetch: {n} files" in res.err and "no pacing needed" in res.err
    assert local_files(data_dir) == {}
    res = run(capsys, "download", *ARGS, "--json", "--dry-run")
    doc = json.loads(res.out)
    lfs = sum(p.endswith((".tif", ".nc")) for p in expected_files(info, "gssic"))
    assert (
        doc["requests_per_file"] == n and doc["requests"] == min(lfs, -(-lfs // 100) + 1) + n - lfs
    )
    res = run(capsys, "download", *ARGS)
    assert res.code == 0 and f"downloaded {n}, skipped 0" in res.err


def test_failures_exit_1_with_a_report(capsys, srv, data_dir):
    assert run(capsys, "catalog", "refresh", "--edition", "miniset", "--region", "europe").code == 0
    srv.faults = Faults(corrupt_first=99)
    res = run(capsys, "download", *ARGS)
    assert res.code == 1
    assert "Error: " in res.err and "file(s) failed" in res.err and "report: " in res.err
    assert "hint: re-run the same command" in res.err
    reports = list((data_dir / ".m3leo" / "reports").iterdir())
    assert len(reports) == 1 and "differs from the manifest" in reports[0].read_text()


def test_unknown_modality_has_a_hint(capsys, srv):
    res = run(capsys, "download", "--edition", "miniset", "--modality", "coherance")
    assert res.code != 0
    assert "Error: unknown modality 'coherance'" in res.err and "hint:" in res.err


def test_no_network_names_hf_endpoint(capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("M3LEO_MAX_RETRIES", "0")
    res = run(capsys, "download", *ARGS)
    assert res.code == 1
    assert "Error: cannot reach" in res.err and "HF_ENDPOINT is http://127.0.0.1:9" in res.err
    assert "hint: check the network and HF_ENDPOINT" in res.err


def test_locked_store_names_the_holder(capsys, srv, data_dir):
    with store_lock(Store(data_dir)):
        res = run(capsys, "download", *ARGS)
    assert res.code == 1
    assert f"is locked by pid {os.getpid()}" in res.err and "--wait" in res.err


def test_verify_reports_then_repairs_and_clean_removes_parts(capsys, srv, info, data_dir):
    assert run(capsys, "download", *ARGS).code == 0
    files = sorted((data_dir / "miniset" / "europe" / PARTITION / "gssic").iterdir())
    files[0].unlink()
    raw = bytearray(files[1].read_bytes())
    raw[100] ^= 0xFF
    files[1].write_bytes(bytes(raw))  # same size, wrong content: only a hash finds it
    stray = files[2].with_name(files[2].name + ".part")
    stray.write_bytes(b"partial")
    res = run(capsys, "verify", *ARGS, "--json")
    assert res.code == 1
    rep = json.loads(res.out)
    assert len(rep["missing"]) == 1 and len(rep["corrupt"]) == 1
    assert rep["parts"] == [str(stray)]
    res = run(capsys, "verify", *ARGS)
    assert (
        "1 missing, 1 corrupt" in res.err and "hint: run the same command with --repair" in res.err
    )
    res = run(capsys, "verify", *ARGS, "--repair")
    assert res.code == 0, res.err
    assert run(capsys, "verify", *ARGS).code == 0
    res = run(capsys, "clean", "--region", "europe")
    assert res.code == 0 and "removed 1 .part files" in res.err
    assert not stray.exists()
    assert local_files(data_dir) == expected_files(info, "gssic")


def test_verify_without_a_manifest_says_how_to_get_one(capsys, srv):
    res = run(capsys, "verify", *ARGS)
    assert res.code == 1 and "hint:" in res.err and "catalog refresh" in res.err


def test_sigkill_mid_download_then_resume_with_range(srv, info, data_dir, tmp_path):
    """A real process killed with SIGKILL mid-way; the next run completes it with Range."""
    env = {**os.environ, "HF_ENDPOINT": srv.url, "M3LEO_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "m3leo_cli", "download", *ARGS, "--workers", "2", "--quiet"]
    assert subprocess.run([*cmd, "--dry-run"], env=env, capture_output=True).returncode == 0
    # every first GET of a file is cut after 900 bytes; the client waits before resuming
    srv.faults = Faults(cut_after_bytes=900, latency_ms=20)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            parts = list(data_dir.rglob("*.part"))
            if any(p.stat().st_size == 900 for p in parts if p.exists()):
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    parts = [p for p in data_dir.rglob("*.part") if p.stat().st_size]
    assert parts, "the kill should land while some file is partial"
    full = {
        (data_dir / "miniset" / "europe" / rel).with_name(Path(rel).name + ".part"): len(b)
        for rel, b in expected_files(info, "gssic").items()
    }
    # each partial file must be continued from where it stopped (a complete one needs no request)
    sizes = [p.stat().st_size for p in parts if p.stat().st_size < full[p]]
    srv.faults = Faults()
    srv.clear_log()
    done = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # one ranged GET per partial file (straight to the content host with a batch's link; a
    # resolve and its redirect carry the same Range, so each file is counted once)
    ranged = {(r.repo_path, r.range) for r in srv.log if r.range}
    assert sorted(rng for _, rng in ranged) == sorted(f"bytes={n}-" for n in sizes)
    assert local_files(data_dir) == expected_files(info, "gssic")
    # the killed run's marker was turned into suspects, each re-hashed, and the run ended clean
    assert not list((data_dir / ".m3leo" / "runs").glob("*.json"))
    assert not (data_dir / ".m3leo" / "suspects.txt").exists()


def test_catalog_warnings_are_shown_and_hostile_paths_never_written(
    capsys, monkeypatch, info, data_dir
):
    hostile = ("../evil.tif", "/etc/passwd")
    with serve(info, Faults(hostile_paths=hostile)) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        res = run(capsys, "download", *ARGS, "--quiet")  # warnings show even with --quiet
    assert res.code == 0, res.err
    warned = [ln for ln in res.err.splitlines() if ln.startswith("warning: catalog europe:")]
    assert len(warned) == 2 and all("escape the store" in ln for ln in warned), res.err
    assert "'../evil.tif'" in warned[0] + warned[1] and "'/etc/passwd'" in warned[0] + warned[1]
    assert local_files(data_dir) == expected_files(info, "gssic")  # the rest, all of it
    assert not list(data_dir.parent.rglob("evil*")) and not (data_dir / "etc").exists()
    assert not (data_dir / "miniset" / "europe" / "etc").exists()


def test_the_progress_bar_draws_on_events_without_a_thread_of_its_own(monkeypatch) -> None:
    """A download with a bar on a terminal runs no thread besides its own: its processes can be
    forked (fetch/processes.py). The bar still shows bytes and files as they arrive."""
    import io
    import threading

    from rich.console import Console

    from m3leo_cli.cli import cmd_download
    from m3leo_cli.progress import ProgressEvent

    screen = io.StringIO()
    term = Console(file=screen, force_terminal=True, width=120)
    monkeypatch.setattr(cmd_download, "err_console", lambda: term)
    before = threading.active_count()
    bar = cmd_download._Bar("download")
    try:
        assert threading.active_count() == before
        bar.update(ProgressEvent("start", "download", total_files=2, total_bytes=2_000_000))
        bar.shown = 0.0  # as if the last redraw were long ago
        bar.update(ProgressEvent("advance", "download", files=1, bytes=1_000_000))
        assert threading.active_count() == before
    finally:
        bar.close()
    assert "1/2 files" in screen.getvalue() and "1.0/2.0 MB" in screen.getvalue()
