from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import run


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    res = run(capsys, "--help")
    assert res.code == 0
    assert "config" in res.out and "catalog" in res.out


def test_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    res = run(capsys, "--bogus")
    assert res.code == 2
    assert "No such option" in res.err


def test_library_error_renders_error_and_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("workers = 'x'")
    monkeypatch.setenv("M3LEO_CONFIG", str(cfg))
    res = run(capsys, "config", "show")
    assert res.code == 1
    lines = res.err.strip().splitlines()
    assert lines[0].startswith("Error: bad value 'x' for workers")
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in res.err


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "m3leo_cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.strip() == __import__("m3leo_cli").__version__


def test_bad_flag_value_is_one_error_line_and_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    res = run(capsys, "stats", "--year", "abc")
    assert res.code == 2
    lines = res.err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Error: Invalid value for '--year'")
    assert lines[1] == "hint: see `m3leo stats --help`"
    assert res.out == ""


def test_ctrl_c_says_interrupted_with_a_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(**_: object) -> None:
        raise KeyboardInterrupt  # what Python raises when the user presses Ctrl-C

    monkeypatch.setattr("m3leo_cli.cli.cmd_config.settings_from", interrupted)
    res = run(capsys, "config", "show")
    assert res.code == 130
    lines = res.err.strip().splitlines()
    assert lines == [
        "Error: interrupted",
        "hint: re-run the same command: finished files are kept and partial ones resume",
    ]


@pytest.mark.parametrize(
    ("args", "code", "message", "hint"),
    [
        (("download", "--workers", "0", "--dry-run"), 2,
         "--workers must be between 1 and 256", "--workers 16"),
        (("stats", "--limit", "0"), 2, "--limit must be at least 1", "--limit N"),
        (("export", "-f", "npz", "-o", "OUT", "-m", "dem", "--shard-size", "0"), 2,
         "--shard-size must be at least 1", "--shard-size 256"),
        (("export", "-f", "npz", "-o", "OUT", "-m", "dem", "--resample", "0"), 2,
         "--resample must be 1..4096", "--resample 64"),
        (("export", "-f", "npz", "-o", "OUT", "-m", "dem", "--resample", "100000"), 2,
         "--resample must be 1..4096", "at most --resample 4096"),
    ],
)  # fmt: skip
def test_bad_numbers_name_the_flag_in_a_hint(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: tuple[str, ...],
    code: int,
    message: str,
    hint: str,
) -> None:
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    res = run(capsys, *argv, "--data-dir", str(tmp_path / "store"))
    assert res.code == code
    lines = res.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"Error: {message}")
    assert lines[1].startswith("hint: ") and hint in lines[1]


def test_an_output_folder_that_cannot_be_created_is_an_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    res = run(capsys, "synth", str(a_file / "src"), "--quiet")
    assert res.code == 1
    lines = res.err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"Error: {a_file / 'src'}")
    assert lines[0].endswith(": Not a directory")
    assert lines[1] == (
        "hint: check that the folder exists and is writable (--out, --data-dir or M3LEO_DATA_DIR)"
    )


def test_config_show_json_names_sources(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080/")
    res = run(capsys, "config", "show", "--json")
    assert res.code == 0
    doc = json.loads(res.out)
    assert doc["settings"]["endpoint"] == "http://mirror.example:8080"
    assert doc["sources"]["endpoint"] == "$HF_ENDPOINT"
    assert doc["sources"]["workers"] == "default"


@pytest.mark.parametrize(
    ("args", "usage"),
    [((), "Usage: m3leo [OPTIONS] COMMAND"), (("catalog",), "Usage: m3leo catalog [OPTIONS]"),
     (("config",), "Usage: m3leo config [OPTIONS]")],
)  # fmt: skip
def test_bare_groups_show_their_help_not_an_error(capsys, args, usage) -> None:
    """Issue 12 item 8: `m3leo`, `m3leo catalog`, `m3leo config` printed the whole help as one
    long `Error:` line."""
    res = run(capsys, *args)
    assert res.code == 0 and "Error" not in res.err
    assert res.out.startswith(usage) and "Commands:" in res.out
    assert len(res.out.splitlines()) > 5  # the real, multi-line help


def test_the_command_table_names_every_command() -> None:
    """`m3leo <command>` imports only its own module: the table must match what registers."""
    import importlib

    from m3leo_cli.cli import COMMAND_MODULES, COMMANDS, _load_commands, app

    _load_commands()
    registered = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert set(COMMANDS) == registered
    assert set(COMMANDS.values()) == set(COMMAND_MODULES)
    for cmd in app.registered_commands:  # each command lives in the module the table names
        assert cmd.callback is not None
        mod = importlib.import_module(cmd.callback.__module__)
        assert mod.__name__.rsplit(".", 1)[1] == COMMANDS[str(cmd.name)]


# Runs `m3leo download` and stops it at its first request: what had been imported by then.
_FIRST_REQUEST = """
import json, os, sys
import m3leo_cli.hub.wire as wire
def send(self, method, url, headers, body=None):
    mods = sorted(m for m in sys.modules if m.startswith(("pyarrow", "m3leo_cli.cli.cmd_")))
    print(json.dumps({"url": url, "modules": mods}))
    sys.stdout.flush()
    os._exit(0)
wire.Wire.send = send
import m3leo_cli.catalog.refresh as refresh
refresh._preload = lambda: None  # the background import would race this check
from m3leo_cli.cli import main
main(["download", "--edition", "miniset", "--region", "europe", "-q"])
"""


def test_a_download_sends_its_first_request_before_the_heavy_imports(tmp_path: Path) -> None:
    """Start-up: the first request leaves before pyarrow is imported on the way to it (it loads
    in the background while the Hub answers) and without importing the other commands."""
    import json
    import os

    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", M3LEO_DATA_DIR=str(tmp_path),
               M3LEO_CONFIG=os.devnull, HF_HOME=str(tmp_path / "hf"))  # fmt: skip
    env.pop("HF_HUB_OFFLINE", None)
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_REQUEST], env=env, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout  # fmt: skip
    first = json.loads(out)
    assert first["url"] == "http://127.0.0.1:9/api/datasets/M3LEO-miniset/europe/revision/main"
    assert first["modules"] == ["m3leo_cli.cli.cmd_download"]
