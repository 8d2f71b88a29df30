"""A small repo folder with real-shaped M3LEO names, for the server tests (no synth needed)."""

from __future__ import annotations

import random
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = "M3LEO-miniset/europe"
PART = "europe_partitions_aschips_2f8bd3f01ddd5"
IDS = ("020d259a89240", "0127acc7072b4", "28225af8c635c")
CSV = f"{PART}_splits_60bands_angle09_60-20-20_miniset.csv"
GEOJSON = f"{PART}_miniset.geojson"


def build_repo(root: Path, seed: int = 0) -> dict[str, bytes]:
    """Write ``root/M3LEO-miniset/europe/...``; returns repo path -> bytes."""
    rnd = random.Random(seed)
    files: dict[str, bytes] = {
        ".gitattributes": b"*.nc filter=lfs diff=lfs merge=lfs -text\n"
        b"*.tif filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"# M3LEO miniset, europe (synthetic)\n",
        CSV: b"identifier,split,original_index\n"
        + b"".join(
            f"{t},{s},{i}\n".encode()
            for i, (t, s) in enumerate(zip(IDS, ("train", "val", "test"), strict=True))
        ),
        GEOJSON: b'{"type": "FeatureCollection", "features": []}\n',
    }
    for i, tid in enumerate(IDS):
        files[f"{PART}/gssic/{tid}.nc"] = rnd.randbytes(3000 + 17 * i)
        files[f"{PART}/s1grd-2020/{tid}.tif"] = rnd.randbytes(5000 + 31 * i)
    base = root / REPO
    for rel, data in files.items():
        dest = base / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return files


@contextmanager
def tiny_server(
    do_get: Callable[[BaseHTTPRequestHandler], None], tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """A threaded HTTP/1.1 server on loopback whose GETs ``do_get`` answers; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            do_get(self)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
