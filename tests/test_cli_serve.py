"""`m3leo serve`: starts, prints the HF_ENDPOINT line, serves, stops cleanly; refuses bad input."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer

from m3leo_cli.cli.app import app
from m3leo_cli.server import HubServer
from m3leo_cli.testing.synth import SourceInfo
from tests.clirun import run
from tests.serverkit import REPO, build_repo


def _start(folder: Path, *extra: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Run `m3leo serve` in a child process; return it, its endpoint and the lines so far."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "m3leo_cli", "serve", str(folder), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:  # ends when the child exits, so a failure cannot hang the test
        lines.append(line)
        if "HF_ENDPOINT=" in line:
            return proc, line.split("HF_ENDPOINT=", 1)[1].strip(), lines
    proc.wait()
    raise AssertionError("no HF_ENDPOINT line:\n" + "".join(lines))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_the_endpoint_serves_and_stops_cleanly(
    tmp_path: Path, sig: signal.Signals
) -> None:
    build_repo(tmp_path)
    proc, endpoint, lines = _start(tmp_path, "--page-size", "2")
    try:
        assert endpoint.startswith("http://127.0.0.1:")
        text = "".join(lines)
        assert REPO in text and "Serving 1 repo(s)" in text
        with httpx.Client(timeout=30) as c:
            r = c.get(f"{endpoint}/api/datasets/{REPO}/tree/main?recursive=true")
            assert r.status_code == 200 and len(r.json()) == 2 and "link" in r.headers
            readme = c.get(f"{endpoint}/datasets/{REPO}/resolve/main/README.md")
            assert readme.content == (tmp_path / REPO / "README.md").read_bytes()
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "Traceback" not in err and "Stopped." in err
    assert out == ""  # people on stderr, nothing on stdout


def test_serve_bad_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    res = run(capsys, "serve", str(tmp_path / "missing"), "--port", "0")
    assert res.code == 1
    lines = res.err.strip().splitlines()
    assert lines[0] == f"Error: {tmp_path / 'missing'} is not a folder"
    assert lines[1].startswith("hint: give the folder that holds <org>/<name>/")


def test_serve_port_in_use(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = run(capsys, "serve", str(tmp_path), "--port", str(port))
    assert res.code == 1
    lines = res.err.strip().splitlines()
    assert lines[0] == f"Error: port {port} on 127.0.0.1 is already in use (hub port)"
    assert lines[1].startswith("hint: choose another --port")
    assert "Traceback" not in res.err


def test_serve_bad_host(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    res = run(capsys, "serve", str(tmp_path), "--host", "203.0.113.7", "--port", "0")
    assert res.code == 1
    assert res.err.startswith("Error: cannot listen on 203.0.113.7:0")
    assert "hint: use --host 127.0.0.1" in res.err


def test_serve_bad_page_size_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    res = run(capsys, "serve", str(tmp_path), "--page-size", "0")
    assert res.code == 2 and "--page-size" in res.err


def test_serve_real_hub_mode_expires_links_gates_and_renames(tmp_path: Path) -> None:
    build_repo(tmp_path)
    proc, endpoint, lines = _start(
        tmp_path, "--real-hub", "--link-ttl", "0.5", "--gated", REPO, "--grant-token", "hf_ok",
        "--rename", f"{REPO}-old={REPO}",
    )  # fmt: skip
    ok = {"authorization": "Bearer hf_ok"}
    try:
        assert "content links expire after 0.5 s" in "".join(lines)
        with httpx.Client(timeout=30) as c:
            anon = c.get(f"{endpoint}/api/datasets/{REPO}/revision/main")
            assert anon.status_code == 401 and anon.headers["x-error-code"] == "GatedRepo"
            bad = c.get(f"{endpoint}/api/datasets/{REPO}/revision/main", headers={
                "authorization": "Bearer hf_nope"})  # fmt: skip
            assert (
                bad.status_code == 401 and "Invalid credentials" in bad.headers["x-error-message"]
            )
            good = c.get(f"{endpoint}/api/datasets/{REPO}/revision/main", headers=ok)
            assert good.status_code == 200 and good.headers["ratelimit"].startswith('"api";r=')
            moved = c.get(f"{endpoint}/api/datasets/{REPO}-old/revision/main", headers=ok)
            assert moved.status_code == 307
            assert moved.headers["location"] == f"/api/datasets/{REPO}/revision/main"
            tif = next(p for p in (tmp_path / REPO).rglob("*.tif"))
            rel = tif.relative_to(tmp_path / REPO).as_posix()
            r = c.get(f"{endpoint}/datasets/{REPO}/resolve/main/{rel}", headers=ok)
            assert r.status_code == 302
            first = c.get(r.headers["location"])
            assert first.status_code == 200 and first.content == tif.read_bytes()
            assert first.headers["etag"].strip('"') != r.headers["x-linked-etag"].strip('"')
            time.sleep(0.6)
            assert c.get(r.headers["location"]).status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_serve_hub_options_need_real_hub_mode(capsys, tmp_path: Path) -> None:
    build_repo(tmp_path)
    res = run(capsys, "serve", str(tmp_path), "--gated", REPO)
    assert res.code == 2 and "hint: add --real-hub" in res.err


def test_max_connections_default_is_the_librarys(capsys) -> None:
    from m3leo_cli.server.pool import DEFAULT_MAX_CONNECTIONS

    res = run(capsys, "serve", "--help")
    assert "--max-connections" in res.out
    params = {p.name: p.default for p in typer.main.get_command(app).commands["serve"].params}
    assert params["max_connections"] == DEFAULT_MAX_CONNECTIONS


def test_serve_one_folder_too_deep_warns_with_the_folder_to_serve(tmp_path: Path) -> None:
    build_repo(tmp_path)
    for folder, depth in ((tmp_path / "M3LEO-miniset", "one"), (tmp_path / REPO, "two")):
        proc, _, lines = _start(folder)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        warning = next(line for line in lines if line.startswith("warning:"))
        assert f"serving {folder} {depth} level" in warning
        assert warning.rstrip().endswith(
            f"serve the folder above it instead: m3leo serve {tmp_path}"
        )
    proc, _, lines = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert not any(line.startswith("warning:") for line in lines)


def test_serve_names_a_hard_link_it_does_not_serve(tmp_path: Path) -> None:
    build_repo(tmp_path / "src")
    os.link(tmp_path / "src" / REPO / "README.md", tmp_path / "elsewhere.md")
    proc, endpoint, lines = _start(tmp_path / "src")
    try:
        with httpx.Client(timeout=30) as c:
            r = c.get(f"{endpoint}/datasets/{REPO}/resolve/main/README.md")
            assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    text = "".join(lines) + err
    line = f"warning: not serving {tmp_path / 'src' / REPO / 'README.md'}: a hard link (2 names"
    assert text.count(line) == 1 and "Traceback" not in text


# ------------------------------------------------------------------ a store served as a mirror

DK = "s1grd-2020"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, SourceInfo]]:
    """An m3leo store that downloaded from a two-region source: the miniset of europe, the
    full edition of europe with --keep-shards, the full edition of conus without."""
    from m3leo_cli.testing.synth import SynthConfig, write_source

    cfg = SynthConfig(regions=("europe", "conus"), tiles=6, datakinds=(DK,), tiles_per_shard=3,
                      chip_px=16, native_shape=(4, 5))  # fmt: skip
    source = write_source(tmp_path_factory.mktemp("upstream"), cfg)
    data = tmp_path_factory.mktemp("store")
    env = {**os.environ, "M3LEO_DATA_DIR": str(data), "M3LEO_CONFIG": os.devnull}
    with HubServer(source.root) as upstream:
        env["HF_ENDPOINT"] = upstream.url
        for args in (
            ("-e", "miniset", "-r", "europe"),
            ("-e", "full", "-r", "europe", "--fetch", "whole", "--keep-shards"),
            ("-e", "full", "-r", "conus", "--fetch", "whole"),
        ):
            done = subprocess.run(
                [sys.executable, "-m", "m3leo_cli", "download", *args, "-m", DK, "-q"],
                env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
    assert (data / "full" / "conus").is_dir() and (data / ".m3leo" / "shards" / "europe").is_dir()
    yield data, source


def test_a_store_serves_the_full_edition_only_from_kept_shards(
    store: tuple[Path, SourceInfo], capsys, monkeypatch, tmp_path: Path
) -> None:
    """Issue 27: a mirror of a store must not pretend to hold what it does not."""
    data, source = store
    client_dir = tmp_path / "client"
    monkeypatch.setenv("M3LEO_DATA_DIR", str(client_dir))
    with HubServer(data) as mirror, httpx.Client(timeout=30) as c:
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)
        assert mirror.repo_ids() == ["M3LEO-miniset/europe", "M3LEO/europe"]
        listed = c.get(f"{mirror.url}/api/datasets/M3LEO/europe/tree/main?recursive=true").json()
        files = {e["path"] for e in listed if e["type"] == "file"}
        full = source.repo("full", "europe")
        assert files == {p for p in full.files if p.endswith((".parquet", ".csv"))}
        conus = c.get(f"{mirror.url}/api/datasets/M3LEO/conus/revision/main")
        assert conus.status_code == 404 and conus.headers["x-error-code"] == "RepoNotFound"
        assert conus.headers["x-error-message"].startswith(
            "this mirror has no M3LEO/conus: its store holds the full edition of conus unpacked"
        )
        res = run(capsys, "catalog", "refresh", "-e", "full")
        assert res.code == 0, res.err
        assert "has no M3LEO/<region> repo for china, conus, middleeast, pakin" in res.err
        res = run(capsys, "download", "-e", "full", "-r", "europe", "-m", DK)
        assert res.code == 0, res.err
    mine, theirs = client_dir / "full" / "europe", data / "full" / "europe"
    got = {p.relative_to(mine): p.read_bytes() for p in mine.rglob(f"{DK}/*.tif")}
    want = {p.relative_to(theirs): p.read_bytes() for p in theirs.rglob(f"{DK}/*.tif")}
    assert got and got == want  # every tile, byte for byte, rebuilt from the mirror's shards


def test_serving_a_store_says_which_editions_and_regions_it_serves(
    store: tuple[Path, SourceInfo],
) -> None:
    data, _ = store
    proc, _, lines = _start(data)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    text = "".join(lines)
    assert "Serving 2 repo(s)" in text and "(an m3leo store)" in text
    assert "Edition miniset: europe\n" in text and "Edition full: europe\n" in text
    assert (
        f"Not served: {data / 'full' / 'conus'}: the full edition of conus, unpacked, with no "
        "kept shards: not served as M3LEO/conus" in text
    )
