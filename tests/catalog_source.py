"""Shared test data for the catalog tests: one synthetic source per session, and helpers."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from m3leo_cli.hub.client import TreeEntry
from m3leo_cli.server import git_blob_sha1
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source

SMALL = {"chip_px": 16, "native_shape": (4, 5)}
_CACHE: dict[str, SourceInfo] = {}


def shared_source(factory: pytest.TempPathFactory) -> SourceInfo:
    """europe + conus, both editions, 10 tiles each: read-only, built once per session."""
    if "shared" not in _CACHE:
        root = factory.mktemp("catalog-src")
        _CACHE["shared"] = write_source(root, SynthConfig(regions=("europe", "conus"), **SMALL))
    return _CACHE["shared"]


def own_source(tmp_path: Path, editions: tuple[str, ...] = ("miniset",)) -> tuple[Path, SourceInfo]:
    """A private europe source a test may change: (its root, the pristine source's info)."""
    key = "own-" + "-".join(editions)
    if key not in _CACHE:
        root = tmp_path.parent / f"pristine-{key}"
        _CACHE[key] = write_source(root, SynthConfig(regions=("europe",), editions=editions,
                                                     tiles=6, **SMALL))  # fmt: skip
    dest = tmp_path / "src"
    shutil.copytree(_CACHE[key].root, dest)
    return dest, _CACHE[key]


def listing_from_folder(repo: Path) -> list[TreeEntry]:
    """What the Hub's tree listing says about a repo folder (LFS: .tif/.nc/.parquet)."""
    out = []
    for p in sorted(repo.rglob("*")):
        rel = p.relative_to(repo).as_posix()
        if p.is_dir():
            out.append(TreeEntry(rel, "directory", 0, "0" * 40, None))
            continue
        data = p.read_bytes()
        lfs = hashlib.sha256(data).hexdigest() if p.suffix in (".tif", ".nc", ".parquet") else None
        out.append(TreeEntry(rel, "file", len(data), git_blob_sha1(data), lfs))
    return out
