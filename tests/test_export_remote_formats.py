"""The new export formats (zarr, tfrecord, hf) to an object store (``--out s3://...``) against
moto's S3-compatible server on loopback: the same objects as a local export, and a re-run
that finds every unit there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
pytest.importorskip("s3fs", reason="s3fs is in the dev extra")

from export_source import LAYERS, plan_for, shared_source, tree_bytes  # noqa: E402
from s3kit import empty_bucket, moto_endpoint  # noqa: E402

from m3leo_cli.config import load_settings  # noqa: E402
from m3leo_cli.export import ExportOptions, run_export  # noqa: E402

BUCKET = "m3leo-formats"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture
def bucket(s3: str, monkeypatch: pytest.MonkeyPatch) -> object:
    return empty_bucket(s3, BUCKET, monkeypatch)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    return shared_source(tmp_path_factory)


@pytest.mark.parametrize("fmt", ["zarr", "tfrecord", "hf"])
def test_export_to_s3_holds_the_local_bytes_and_resumes(source, bucket, tmp_path: Path, fmt: str):
    pytest.importorskip({"zarr": "zarr", "tfrecord": "tfrecord", "hf": "datasets"}[fmt])
    plan = plan_for(source, LAYERS)
    run_export(plan, ExportOptions(format=fmt, out=tmp_path / "local", shard_size=2))
    settings = load_settings({"data_dir": tmp_path / "data"})
    url = f"s3://{BUCKET}/ds-{fmt}"
    first = run_export(plan, ExportOptions(format=fmt, out=url, shard_size=2), settings=settings)
    assert first.complete
    objects = {
        p.split(f"ds-{fmt}/", 1)[1]: bucket.cat_file(p)
        for p in sorted(bucket.find(f"{BUCKET}/ds-{fmt}"))
    }
    assert objects == tree_bytes(tmp_path / "local")
    staged = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert staged and all(".m3leo-export" in p.parts for p in staged)  # only the resume state
    again = run_export(plan, ExportOptions(format=fmt, out=url, shard_size=2), settings=settings)
    assert again.units_written == 0 and again.units_skipped == first.units_written
