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
