"""Shared setup for the download tests: one pristine miniset source, a fresh server per test."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from m3leo_cli import spec
from m3leo_cli.config import Settings, load_settings
from m3leo_cli.server import Faults, HubServer, RequestRecord
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source

_CACHE: dict[str, SourceInfo] = {}
REGION = "europe"
PARTITION = spec.get_region(REGION).partition


def source(factory: pytest.TempPathFactory) -> SourceInfo:
    """europe miniset, 8 tiles, small chips: written once per session, never modified."""
    if "src" not in _CACHE:
        root = factory.mktemp("dl-src")
        cfg = SynthConfig(
            regions=(REGION,), editions=("miniset",), tiles=8, chip_px=32, native_shape=(4, 5)
        )
        _CACHE["src"] = write_source(root, cfg)
    return _CACHE["src"]


@contextmanager
def serve(info: SourceInfo, faults: Faults | None = None) -> Iterator[HubServer]:
    with HubServer(info.root, faults=faults) as srv:
        yield srv


def settings_for(srv: HubServer, data_dir: Path, **kw: object) -> Settings:
    return load_settings({"endpoint": srv.url, "data_dir": data_dir, **kw}, env={})


def repo_dir(info: SourceInfo) -> Path:
    return info.root / "M3LEO-miniset" / REGION


def expected_files(info: SourceInfo, datakind: str) -> dict[str, bytes]:
    """repo path -> bytes of every file a `--modality <datakind>` download must produce."""
    repo = repo_dir(info)
    region = spec.get_region(REGION)
    out = {}
    for p in sorted((repo / PARTITION / datakind).iterdir()):
        out[f"{PARTITION}/{datakind}/{p.name}"] = p.read_bytes()
    for name in (region.split_csv("miniset"), region.geojson()):
        out[name] = (repo / name).read_bytes()
    return out


def local_files(data_dir: Path) -> dict[str, bytes]:
    base = data_dir / "miniset" / REGION
    if not base.is_dir():
        return {}
    return {
        p.relative_to(base).as_posix(): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def file_requests(srv: HubServer) -> list[RequestRecord]:
    """Log records of file GETs (resolve on the hub origin, or the content origin)."""
    return [
        r for r in srv.log if r.method == "GET" and ("/resolve/" in r.path or r.origin == "content")
    ]
