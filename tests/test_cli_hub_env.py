"""Day one on the real Hub, as a user meets it through the CLI: stored tokens, --token,
fast failures, malformed endpoints, budgets in --dry-run, --revision, HF_* conventions."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from clirun import run
from dl_helpers import expected_files, local_files, serve, source

from m3leo_cli.config import load_settings, stored_token
from m3leo_cli.errors import HubConnectionError
from m3leo_cli.hub.client import HubClient
from m3leo_cli.server import HubServer, RealHub

ARGS = ("--edition", "miniset", "--region", "europe", "--modality", "gssic")
REPO = "M3LEO-miniset/europe"


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


@pytest.fixture
def srv(info, monkeypatch):  # type: ignore[no-untyped-def]
    with serve(info) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- tokens


def test_stored_token_lookup_follows_huggingface_hub(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".cache" / "huggingface").mkdir(parents=True)
    (home / ".cache" / "huggingface" / "token").write_text("hf_home\n")
    (tmp_path / "hfh").mkdir()
    (tmp_path / "hfh" / "token").write_text("hf_hfhome")
    (tmp_path / "custom").write_text("hf_path")
    env = {"HOME": str(home)}
    assert stored_token(env) == ("hf_home", f"stored token ({home}/.cache/huggingface/token)")
    env["HF_HOME"] = str(tmp_path / "hfh")
    assert stored_token(env)[0] == "hf_hfhome"  # type: ignore[index]
    env["HF_TOKEN_PATH"] = str(tmp_path / "custom")
    assert stored_token(env) == ("hf_path", f"$HF_TOKEN_PATH ({tmp_path}/custom)")
    s = load_settings(env={**env, "HF_TOKEN": "hf_env"})
    assert s.token == "hf_env" and s.source_of("token") == "$HF_TOKEN"
    s = load_settings({"token": "hf_flag"}, env=env)
    assert s.token == "hf_flag" and s.source_of("token") == "command line"
    s = load_settings(env=env)
    assert s.token == "hf_path" and s.request_budget == 5000 and s.hub_plan == "free"
    (tmp_path / "custom").write_text("  \n")
    assert stored_token(env) is None  # an empty file is no token


def test_stored_token_is_used_and_never_sent_to_the_content_host(
    capsys, srv, info, data_dir, monkeypatch
):
    hf_home = Path(str(data_dir) + "-hf")
    hf_home.mkdir()
    (hf_home / "token").write_text("hf_stored_secret\n")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    res = run(capsys, "config", "show", "--json")
    doc = json.loads(res.out)
    assert doc["settings"]["token"] == "set" and "hf_stored_secret" not in res.out
    assert doc["sources"]["token"] == f"stored token ({hf_home}/token)"
    res = run(capsys, "download", *ARGS)
    assert res.code == 0, res.err
    assert local_files(data_dir) == expected_files(info, "gssic")
    hub = [r for r in srv.log if r.origin == "hub"]
    content = [r for r in srv.log if r.origin == "content"]
    assert hub and content
    assert all(r.headers.get("authorization") == "Bearer hf_stored_secret" for r in hub)
    assert not any("authorization" in r.headers for r in content)


def test_token_flag_on_the_commands_that_reach_the_hub(capsys, srv, data_dir):
    for cmd in (("download", *ARGS, "--dry-run"), ("catalog", "refresh", *ARGS[:4])):
        srv.clear_log()
        res = run(capsys, *cmd, "--token", "hf_flagged")
        assert res.code == 0, res.err
        assert srv.log and all(
            r.headers.get("authorization") == "Bearer hf_flagged" for r in srv.log
        )
    res = run(capsys, "verify", *ARGS, "--token", "hf_flagged", "--repair")
    assert res.code == 0, res.err


def test_cli_auth_hints(capsys, info, data_dir, monkeypatch):
    real = RealHub(gated=frozenset({REPO}), tokens=frozenset({"hf_ok"}))
    with HubServer(info.root, real=real) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        anon = run(capsys, "catalog", "refresh", *ARGS[:4])
        bad = run(capsys, "catalog", "refresh", *ARGS[:4], "--token", "hf_revoked")
    assert anon.code == 1 and "401 GatedRepo" in anon.err
    assert "hint: this dataset is gated: accept its terms" in anon.err
    assert bad.code == 1 and "rejected the token (from command line)" in bad.err
    assert "hint: the token is expired or invalid" in bad.err and "hf_revoked" not in bad.err


# ----------------------------------------------------------------------------- fast failures


def test_refused_connection_is_reported_fast(capsys, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    t0 = time.monotonic()
    res = run(capsys, "catalog", "refresh", *ARGS[:4])
    took = time.monotonic() - t0
    assert res.code == 1 and f"cannot reach the Hub at {url}" in res.err
    assert took < 2.0, f"took {took:.1f} s"


def test_dns_failure_is_reported_fast(tmp_path: Path) -> None:
    st = load_settings({"endpoint": "http://no-such-host.invalid", "data_dir": tmp_path}, env={})
    t0 = time.monotonic()
    with HubClient(st) as c, pytest.raises(HubConnectionError) as exc:
        c.revision(REPO)
    assert "no-such-host.invalid" in exc.value.message
    assert time.monotonic() - t0 < 2.0


def test_timeout_is_honoured_as_given(tmp_path: Path) -> None:
    """A server that accepts and never answers: --timeout 1 fails in about 1 s, not 30."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        st = load_settings({"endpoint": url, "data_dir": tmp_path, "timeout": 1.0}, env={})
        t0 = time.monotonic()
        with HubClient(st) as c, pytest.raises(HubConnectionError) as exc:
            c.revision(REPO)
        took = time.monotonic() - t0
    finally:
        stop.set()
        t.join()
        for conn in held:
            conn.close()
        sock.close()
    assert "ReadTimeout" in exc.value.message
    assert 0.9 < took < 2.5, f"took {took:.1f} s"


def test_malformed_endpoint_is_a_usage_error_at_once(capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "huggingface.co")
    t0 = time.monotonic()
    res = run(capsys, "download", *ARGS)
    assert res.code == 2 and time.monotonic() - t0 < 1.0
    assert "malformed Hub endpoint 'huggingface.co' (from $HF_ENDPOINT)" in res.err
    assert "hint: give the full URL, e.g. https://huggingface.co" in res.err


# ----------------------------------------------------------------------------- budgets, conventions


def test_dry_run_reports_the_three_budgets(capsys, srv, monkeypatch):
    res = run(capsys, "download", *ARGS, "--dry-run")
    assert "Hub budgets per 300 s (anonymous plan): resolvers 3000, api 500, pages 100" in res.err
    monkeypatch.setenv("M3LEO_PLAN", "pro")
    monkeypatch.setenv("M3LEO_API_PER_WINDOW", "700")
    doc = json.loads(run(capsys, "download", *ARGS, "--dry-run", "--json").out)
    assert doc["hub_plan"] == "pro"
    assert doc["budgets"] == {"resolvers": 12000, "api": 700, "pages": 400}


def test_api_calls_are_paced_on_their_own_budget(info, tmp_path):
    """Tree pages are API calls: a budget of 3 per 0.5 s makes a 9-page listing wait."""
    with HubServer(info.root, page_size=4) as server:
        st = load_settings(
            {
                "endpoint": server.url,
                "data_dir": tmp_path,
                "api_per_window": 3,
                "window_seconds": 0.5,
            },
            env={},
        )
        with HubClient(st) as c:
            commit = c.revision(REPO)
            pages_before = len(server.log)
            entries = list(c.iter_tree(REPO, commit))
            pages = len(server.log) - pages_before
            waited_api, waited_resolvers = c.pacers["api"].waited, c.pacers["resolvers"].waited
    assert entries and pages >= 6
    assert waited_api >= 0.5 and waited_resolvers == 0


def test_hf_conventions(tmp_path: Path) -> None:
    for value in ("1", "TRUE", "on", "Yes"):
        assert load_settings(env={"HF_HUB_OFFLINE": value}).offline is True
    for value in ("0", "false", "2", "nope", ""):
        assert load_settings(env={"HF_HUB_OFFLINE": value}).offline is False  # never an error
    s = load_settings(env={"HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    assert s.progress_bars is False and s.source_of("progress_bars").endswith("PROGRESS_BARS")
    assert load_settings(env={"HF_HUB_DISABLE_PROGRESS_BARS": "0"}).progress_bars is True
    s = load_settings(env={"HF_HUB_DOWNLOAD_TIMEOUT": "10", "HF_HUB_OFFLINE": "TRUE"})
    assert s.timeout == 10.0 and s.source_of("timeout") == "$HF_HUB_DOWNLOAD_TIMEOUT"


def test_max_workers_alias_and_revision_pinning(capsys, srv, data_dir):
    res = run(capsys, "download", *ARGS, "--max-workers", "2", "--dry-run")
    assert res.code == 0, res.err
    commit = srv.commit(REPO)
    res = run(capsys, "download", *ARGS, "--revision", commit, "--json")
    assert res.code == 0, res.err  # the manifest was built from main, at that very commit
    res = run(capsys, "verify", *ARGS, "--revision", "v9.9")
    assert res.code == 1 and "not from revision 'v9.9'" in res.err
    assert "hint: run `m3leo catalog refresh --edition miniset --region europe " in res.err
    res = run(capsys, "export", "--format", "npz", "--out", str(data_dir / "x"), *ARGS[:2],
              "--region", "europe", "--modality", "gssic", "--revision", "v9.9")  # fmt: skip
    assert res.code == 1 and "not from revision 'v9.9'" in res.err


def _on_a_terminal(cmd: list[str], env: dict[str, str]) -> str:
    """Run ``cmd`` with stderr on a pseudo-terminal (where bars are drawn); what it wrote there."""
    import os
    import pty
    import subprocess

    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(60)
    os.close(leader)
    return out.decode(errors="replace")


def test_hf_hub_disable_progress_bars_hides_the_bar_on_a_terminal(srv, data_dir):
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(HF_ENDPOINT=srv.url, M3LEO_DATA_DIR=str(data_dir), TERM="xterm")
    cmd = [sys.executable, "-m", "m3leo_cli", "download", *ARGS]
    with_bar = _on_a_terminal(cmd, env)
    for p in data_dir.rglob("*.nc"):
        p.unlink()
    without = _on_a_terminal(cmd, {**env, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    assert "downloaded" in with_bar and "downloaded" in without  # the summary either way
    assert "\x1b[?25l" in with_bar  # rich hides the cursor while it draws a bar
    assert "\x1b[?25l" not in without and "files" not in without.split("downloaded")[0]
