"""Shared fixtures. Tests never reach the internet: every HTTP test talks to a loopback server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No real token, config file, HF cache, data dir or proxy leaks into a test."""
    home = tmp_path_factory.mktemp("home")
    for var in list(os.environ):
        if var.startswith(("M3LEO_", "HF_")) or var.lower().endswith("_proxy"):
            monkeypatch.delenv(var, raising=False)  # a machine's proxy must not route loopback
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("M3LEO_CONFIG", os.devnull)  # no config file (a missing one is an error)
    monkeypatch.setenv("M3LEO_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("M3LEO_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def data_dir() -> Path:
    return Path(os.environ["M3LEO_DATA_DIR"])
