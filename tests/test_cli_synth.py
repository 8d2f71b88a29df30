"""`m3leo synth`: writes a source a user can serve; refuses bad input with a hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from m3leo_cli import spec
from tests.clirun import run


def test_synth_writes_both_editions(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "src"
    res = run(capsys, "synth", str(out), "--region", "pakin", "--tiles", "4", "--seed", "7")
    assert res.code == 0, res.err
    assert "M3LEO-miniset/pakin" in res.err and "m3leo serve" in res.err
    assert res.out == ""
    part = spec.REGIONS["pakin"].partition
    assert (out / "M3LEO-miniset" / "pakin" / f"{part}_miniset.geojson").is_file()
    assert list((out / "M3LEO" / "pakin" / part / "s1grd-2019").glob("*.zstd.parquet"))


def test_synth_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    res = run(
        capsys,
        "synth",
        str(tmp_path / "s"),
        "-e",
        "miniset",
        "--datakind",
        "srtmdem",
        "--tiles",
        "3",
        "--chip-px",
        "32",
        "--json",
    )
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert [r["repo_id"] for r in doc["repos"]] == ["M3LEO-miniset/europe"]
    assert doc["repos"][0]["datakinds"] == {"srtmdem": 3}
    assert doc["files"] == 3 + 4  # tiles + README, .gitattributes, CSV, GeoJSON


def test_synth_unknown_region(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    res = run(capsys, "synth", str(tmp_path / "s"), "--region", "eurpe")
    assert res.code == 2  # a usage mistake
    assert "Error: unknown region 'eurpe'" in res.err
    assert "hint: did you mean 'europe'" in res.err
    assert not (tmp_path / "s").exists()


def test_synth_refuses_non_empty_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "s"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = run(capsys, "synth", str(out), "--tiles", "3", "-e", "miniset")
    assert res.code == 1
    assert f"Error: {out} is not empty" in res.err
    assert "hint:" in res.err and "--overwrite" in res.err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    res = run(capsys, "synth", str(out), "--tiles", "3", "-e", "miniset", "--overwrite", "-q")
    assert res.code == 0, res.err
    assert (out / "keep.txt").read_text() == "mine"  # only the repo folders are replaced
    assert (out / "M3LEO-miniset" / "europe" / "README.md").is_file()


def test_synth_bad_numbers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    res = run(capsys, "synth", str(tmp_path / "s"), "--tiles", "0")
    assert res.code == 2
    assert "Error: --tiles must be at least 1" in res.err and "hint:" in res.err
    res = run(capsys, "synth", str(tmp_path / "s"), "--chip-px", "100000")
    assert res.code == 2 and "--chip-px must be at most 2048" in res.err
    assert not (tmp_path / "s").exists()
    res = run(capsys, "synth", str(tmp_path / "s"), "--edition", "mini")
    assert res.code == 2 and "unknown edition 'mini'" in res.err
