"""Full-edition counts (issue 27 finding 19): tiles `_parquet.csv` lists that a datakind's shards
do not hold are "not published", never counted as tiles by `stats` nor called missing by
`verify` once a download or an unpack has read the shards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import run

from m3leo_cli.server import HubServer
from m3leo_cli.testing.synth import SourceInfo, SynthConfig, write_source

REGION = "europe"
DK = "gssic"
SEL = ("--edition", "full", "--region", REGION, "--modality", DK)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceInfo:
    cfg = SynthConfig(regions=(REGION,), editions=("full",), tiles=16, datakinds=(DK,),
                      tiles_per_shard=4, chip_px=16, native_shape=(4, 5))  # fmt: skip
    return write_source(tmp_path_factory.mktemp("counts-src"), cfg)


@pytest.fixture
def hub(source: SourceInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer(source.root) as srv:
        monkeypatch.setenv("M3LEO_ENDPOINT", srv.url)
        yield srv


def _unpublished(source: SourceInfo) -> set[str]:
    full = source.repo("full", REGION)
    gone = set(full.tiles) - set(full.coverage[DK])
    assert gone, "the synthetic gssic layer must leave some listed tiles out"
    return gone


def test_stats_after_a_download_counts_only_published_tiles(capsys, hub, source) -> None:
    gone = _unpublished(source)
    assert run(capsys, "download", *SEL, "--quiet").code == 0
    res = run(capsys, "stats", *SEL, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    rows = doc["rows"]
    assert sum(r["not_published"] for r in rows) == len(gone)
    for r in rows:  # every published tile was downloaded: tiles == local on every row
        assert r["tiles"] == r["local_tiles"], r
    assert doc["total"]["tiles"] == len(source.repo("full", REGION).coverage[DK])
    res = run(capsys, "stats", *SEL)
    assert f"{len(gone)} tiles not published" in res.err


def test_verify_after_unpack_does_not_call_unpublished_tiles_missing(
    capsys, hub, source, data_dir: Path
) -> None:
    gone = _unpublished(source)
    assert run(capsys, "catalog", "refresh", "--edition", "full", "--region", REGION).code == 0
    full = source.repo("full", REGION)
    shards = [str(full.root / p) for p in sorted(full.shards) if f"/{DK}/" in p]
    assert shards
    res = run(capsys, "unpack", *shards)
    assert res.code == 0, res.err
    for aux in full.root.glob("*.csv"):  # the split CSV a download would have fetched too
        (data_dir / "full" / REGION / aux.name).write_bytes(aux.read_bytes())
    res = run(capsys, "verify", *SEL)
    assert res.code == 0, res.err
    assert "0 missing" in res.err and "missing " not in res.err.replace("0 missing", "")
    assert "run with --repair" not in res.err and "--repair" not in res.err
    assert f"{len(gone)} tiles not published" in res.err
    res = run(capsys, "stats", *SEL, "--json")
    rows = json.loads(res.out)["rows"]
    assert sum(r["not_published"] for r in rows) == len(gone)
