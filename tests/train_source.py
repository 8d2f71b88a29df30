"""Test data for the training tests: a small synthetic store (downloaded from the loopback Hub,
band statistics saved), built once per session and copied into each test's data dir."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from m3leo_cli.cli import main
from m3leo_cli.server import HubServer
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source

CONFIG = SynthConfig(
    regions=("europe", "conus"),
    editions=("miniset",),
    tiles=10,
    chip_px=32,
    native_shape=(6, 8),
    gunw_datepairs=6,
    datakinds=(
        "s1grd-2020",
        "s2rgbm-2020",
        "gssic",
        "gunw_2020-01-01_2020-03-31",
        "esaworldcover-2020",
        "biomass-2020",
        "ghsbuilts-2020",
        "modis44b006veg",
    ),
)
MODALITIES = ("s1grd", "s2rgbm", "gssic", "gunw", "esaworldcover", "biomass", "ghsbuilts",
              "modis")  # fmt: skip
_CACHE: dict[str, tuple[SourceInfo, Path]] = {}


def train_store(factory: pytest.TempPathFactory) -> tuple[SourceInfo, Path]:
    """(the source, a data dir holding every layer of both regions plus saved band stats)."""
    if "store" in _CACHE:
        return _CACHE["store"]
    info = write_source(factory.mktemp("train-src"), CONFIG)
    template = factory.mktemp("train-store")
    with HubServer(info.root) as srv, pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(("M3LEO_", "HF_")):
                mp.delenv(var)
        mp.setenv("HF_HOME", str(template / ".hf"))
        mp.setenv("M3LEO_CONFIG", os.devnull)
        mp.setenv("M3LEO_DATA_DIR", str(template / "data"))
        mp.setenv("HF_ENDPOINT", srv.url)
        sel = ["--edition", "miniset", "--region", "europe", "--region", "conus"]
        mods = [a for m in MODALITIES for a in ("-m", m)]
        assert main(["download", *sel, *mods]) == 0
        assert main(["stats", "--bands", *sel, *mods]) == 0
    _CACHE["store"] = (info, template / "data")
    return _CACHE["store"]


def install(template: Path, data_dir: Path) -> None:
    """Copy the prepared store into this test's (isolated) data dir."""
    shutil.copytree(template, data_dir, dirs_exist_ok=True)
