"""Exports to an object store (``--out s3://...``) against a real S3-compatible server on
loopback (moto's server), written here and by the workers of a 2-worker Dask LocalCluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
pytest.importorskip("s3fs", reason="s3fs is in the dev extra")
distributed = pytest.importorskip("distributed", reason="the dask extra")

from export_source import FAST_LAYERS, plan_for, shared_source, tree_bytes  # noqa: E402
from s3kit import empty_bucket, moto_endpoint  # noqa: E402

from m3leo_cli.config import load_settings  # noqa: E402
from m3leo_cli.dist.engine import open_engine  # noqa: E402
from m3leo_cli.errors import OutputExistsError  # noqa: E402
from m3leo_cli.export import ExportOptions, run_export  # noqa: E402

BUCKET = "m3leo-test"


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


def _objects(fs, prefix: str) -> dict[str, bytes]:
    return {p.split(f"{prefix}/", 1)[1]: fs.cat_file(p) for p in sorted(fs.find(prefix))}


@pytest.mark.parametrize("fmt", ["webdataset", "npz"])
def test_export_to_s3_holds_the_local_bytes_and_resumes(
    source, bucket, tmp_path: Path, fmt: str
) -> None:
    plan = plan_for(source, FAST_LAYERS)
    run_export(plan, ExportOptions(format=fmt, out=tmp_path / "local", shard_size=2))
    settings = load_settings({"data_dir": tmp_path / "data"})
    url = f"s3://{BUCKET}/ds-{fmt}"
    first = run_export(plan, ExportOptions(format=fmt, out=url, shard_size=2), settings=settings)
    assert first.complete and first.out == url and first.metadata_path == f"{url}/metadata.json"
    assert _objects(bucket, f"{BUCKET}/ds-{fmt}") == tree_bytes(tmp_path / "local")
    staged = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert staged and all(".m3leo-export" in p.parts for p in staged)  # only the resume state
    again = run_export(plan, ExportOptions(format=fmt, out=url, shard_size=2), settings=settings)
    assert again.units_written == 0 and again.units_skipped == first.units_written


def test_dask_workers_upload_their_own_units(source, bucket, tmp_path: Path) -> None:
    plan = plan_for(source, FAST_LAYERS)
    run_export(plan, ExportOptions(format="parquet", out=tmp_path / "local", shard_size=2))
    url = f"s3://{BUCKET}/ds-dask"
    with distributed.LocalCluster(  # started after the AWS_* variables: the workers inherit them
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as lc:
        settings = load_settings(
            {"data_dir": tmp_path / "data", "engine": "dask", "scheduler": lc.scheduler_address}
        )
        with open_engine(settings) as pool:
            res = run_export(
                plan, ExportOptions(format="parquet", out=url, shard_size=2), settings=settings,
                pool=pool,
            )  # fmt: skip
    assert res.complete
    assert _objects(bucket, f"{BUCKET}/ds-dask") == tree_bytes(tmp_path / "local")


def test_a_prefix_holding_other_objects_is_refused(source, bucket, tmp_path: Path) -> None:
    bucket.pipe(f"{BUCKET}/taken/notes.txt", b"someone else's")
    plan = plan_for(source, FAST_LAYERS)
    settings = load_settings({"data_dir": tmp_path / "data"})
    url = f"s3://{BUCKET}/taken"
    with pytest.raises(OutputExistsError, match="already holds 1 objects") as exc:
        run_export(plan, ExportOptions(format="npz", out=url), settings=settings)
    assert "--overwrite" in (exc.value.hint or "")
    res = run_export(plan, ExportOptions(format="npz", out=url, overwrite=True), settings=settings)
    assert res.complete  # written next to the other object, which is kept
    assert bucket.cat_file(f"{BUCKET}/taken/notes.txt") == b"someone else's"
    assert bucket.exists(f"{BUCKET}/taken/metadata.json")


def test_no_aws_credentials_is_one_error_with_a_hint(
    source, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27 finding 13: s3fs installed, no credentials: 60 lines of botocore traceback."""
    import s3fs

    from m3leo_cli.errors import StoreError

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probing
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3)
    s3fs.S3FileSystem.clear_instance_cache()
    plan = plan_for(source, FAST_LAYERS)
    settings = load_settings({"data_dir": tmp_path / "data"})
    url = f"s3://{BUCKET}/nocreds"
    with pytest.raises(StoreError) as info:
        run_export(plan, ExportOptions(format="npz", out=url), settings=settings)
    assert info.value.message.startswith(f"cannot write to {url}: no AWS credentials")
    assert "AWS_PROFILE" in info.value.hint and "AWS_ACCESS_KEY_ID" in info.value.hint
