"""A torchvision that is installed but cannot load (the CUDA wheel pip pairs with a CPU torch
when the litdata extra asks for torchvision) does not break lightning, torchmetrics or litdata
once m3leo_cli.train is imported: it counts as not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("m3leo_cli.train.tasks", reason="the train extra (lightning)")

BROKEN = 'raise RuntimeError("operator torchvision::nms does not exist")\n'
PROBE = """
import sys
import m3leo_cli.train
import lightning, torchmetrics
from torchmetrics.utilities.imports import _TORCHVISION_AVAILABLE
assert not _TORCHVISION_AVAILABLE, "torchmetrics still believes torchvision loads"
try:
    import torchvision
except ImportError:
    pass
else:
    raise AssertionError("torchvision imported")
import m3leo_cli.train.tasks, m3leo_cli.train.datamodule
print("ok")
"""


def _fake_torchvision(site: Path) -> None:
    """A torchvision package (with pip's metadata) whose import fails as the real one does."""
    (site / "torchvision").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text(BROKEN)
    info = site / "torchvision-0.28.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n")


def test_an_unloadable_torchvision_counts_as_absent(tmp_path: Path) -> None:
    _fake_torchvision(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.getcwd()])}
    plain = subprocess.run([sys.executable, "-c", "import lightning"], env=env,
                           capture_output=True, text=True, timeout=240)  # fmt: skip
    assert plain.returncode != 0 and "torchvision::nms" in plain.stderr  # the failure guarded
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
