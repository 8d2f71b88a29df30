"""moto's S3-compatible server on loopback, and an empty bucket on it: the object store the
export tests write to (`--out s3://...`), with the variables s3fs and botocore read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """A running moto server; yields its URL."""
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def empty_bucket(endpoint: str, name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Credentials and endpoint for this test, and bucket ``name`` made empty: its s3fs."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if fs.exists(name):
        fs.rm(name, recursive=True)
    fs.mkdir(name)
    return fs
