"""`m3leo demo` is README's first command: it must pass offline, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import run


def test_demo_runs_every_command_offline(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN="hf_must_not_leak")
    env.update(HTTP_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")  # bypassed
    done = subprocess.run(
        [sys.executable, "-m", "m3leo_cli", "demo", "--workdir", str(work), "--tiles", "6"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    err = done.stderr
    for command in ("catalog refresh", "download", "verify", "stats", "show", "export"):
        assert f"$ m3leo {command}" in err
    assert "Demo finished: 12 commands" in err
    # issue 12 item 10: no `export HF_ENDPOINT=http://...` for a server that is gone
    assert not [line for line in err.splitlines() if line.startswith("export HF_ENDPOINT=http")]
    tail = err[err.index("Demo finished") :]
    assert "HF_ENDPOINT=http" not in tail and "The demo's server has stopped" in tail
    assert f"export M3LEO_DATA_DIR={work / 'store'}" in tail
    pngs = list(work.glob("*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size > 1000 for p in pngs)
    assert (work / "export-npz" / "metadata.json").is_file()
    # the store holds the Hub layout, both editions
    assert (work / "store" / "miniset" / "europe").is_dir()
    assert (work / "store" / "full" / "europe").is_dir()


def test_demo_refuses_a_non_empty_workdir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "something").write_text("x")
    res = run(capsys, "demo", "--workdir", str(tmp_path))
    assert res.code == 2
    assert res.err.startswith("Error: ") and "not empty" in res.err
    assert "hint: give an empty or new --workdir" in res.err


def test_demo_plan_without_the_viz_extra_needs_no_matplotlib(tmp_path: Path) -> None:
    from m3leo_cli.demo import plan_steps

    steps, outputs = plan_steps(tmp_path, "030ad32a09739", viz=False)
    assert not any(step[0] == "show" for step in steps)
    map_step = next(step for step in steps if step[0] == "map")
    assert map_step[-1].endswith(".html")
    assert "picture" not in outputs and outputs["map"].suffix == ".html"
    full_steps, full_outputs = plan_steps(tmp_path, "030ad32a09739", viz=True)
    assert any(step[0] == "show" for step in full_steps)
    assert full_outputs["map"].suffix == ".png"
