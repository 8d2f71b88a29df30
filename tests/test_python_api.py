"""The curated public API: docs/python.md's example runs as written; names resolve lazily."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import m3leo_cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "python.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/python.md has one runnable example"
    return blocks[0]


def test_the_documented_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_example())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("M3LEO_", "HF_"))}
    env["M3LEO_CONFIG"] = os.devnull
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=240
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.match(r"^\d+ files, \d+ bytes$", lines[0])
    assert lines[1] == "('winter_vvasc', 'winter_vvdes', 'winter_vhasc', 'winter_vhdes')"
    assert lines[2].startswith("('winter_vvasc', 'winter_vhasc') (2, 64, 64) ")
    assert -40 < float(lines[2].rsplit(" ", 1)[1]) < 10  # dB, decoded
    assert re.match(r"^[1-9]\d* samples in ", lines[3])


def test_every_public_name_resolves_and_is_documented() -> None:
    doc = DOC.read_text()
    for name in m3leo_cli.__all__:
        assert getattr(m3leo_cli, name) is not None
        if name != "__version__" and not name[0].isupper():
            assert f"{name}(" in doc, f"docs/python.md does not show {name}()"


def test_import_is_cheap() -> None:
    """`import m3leo_cli` loads none of the heavy libraries (the CLI's start-up depends on it)."""
    code = (
        "import sys, m3leo_cli; "
        "print(sorted(m for m in ('pyarrow', 'rasterio', 'httpx', 'numpy', 'h5py') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
