"""Benchmark: how many files per second `m3leo serve` (HubServer) answers on loopback.

A client that is not the bottleneck (stdlib ``http.client``, one keep-alive connection per
thread, bodies read and dropped) fetches every file the way huggingface_hub does: ``HEAD
/resolve`` (302 for LFS files), then ``GET`` of the ``Location`` on the content origin. Also runs
``huggingface_hub.snapshot_download`` through the server for reference. Usage:

    .venv/bin/python benchmarks/bench_server.py [--files 300] [--kib 300] [--threads 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from m3leo_cli.server import HubServer

REPO = "M3LEO-miniset/europe"
PART = "europe_partitions_aschips_2f8bd3f01ddd5"


def build(root: Path, n: int, kib: int) -> list[str]:
    folder = root / REPO / PART / "gssic"
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        rel = f"{PART}/gssic/{i:013x}.nc"
        (root / REPO / rel).write_bytes(os.urandom(kib * 1024))
        paths.append(rel)
    (root / REPO / "README.md").write_text("bench\n")
    return paths


def fetch_all(srv: HubServer, paths: list[str], threads: int) -> float:
    """HEAD resolve + GET content for every path; returns seconds."""
    todo = list(paths)
    lock = threading.Lock()
    commit = srv.commit(REPO)

    def worker() -> None:
        hub = http.client.HTTPConnection("127.0.0.1", srv.port)
        cdn = http.client.HTTPConnection("127.0.0.1", srv.content_port)
        buf = bytearray(1 << 20)
        while True:
            with lock:
                if not todo:
                    break
                path = todo.pop()
            hub.request("HEAD", f"/datasets/{REPO}/resolve/{commit}/{quote(path)}")
            r = hub.getresponse()
            r.read()
            loc = urlsplit(r.headers["Location"])
            cdn.request("GET", loc.path)
            body = cdn.getresponse()
            while body.readinto(buf):
                pass
        hub.close()
        cdn.close()

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--kib", type=int, default=300)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-hf", action="store_true", help="skip the snapshot_download run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        paths = build(root, args.files, args.kib)
        mb = args.files * args.kib * 1024 / 1e6
        with HubServer(root, keep_log=False) as srv:
            t0 = time.perf_counter()
            srv.index_all()
            print(f"index {args.files} files ({mb:.0f} MB): {time.perf_counter() - t0:.2f} s")
            fetch_all(srv, paths[:20], args.threads)  # warm-up
            runs = [fetch_all(srv, paths, args.threads) for _ in range(args.repeat)]
            med = statistics.median(runs)
            print(
                f"HEAD+GET, {args.threads} threads: {args.files / med:.0f} files/s, "
                f"{mb / med:.0f} MB/s (median of {args.repeat}: "
                + ", ".join(f"{r:.2f}s" for r in runs)
                + ")"
            )
            if not args.no_hf:
                os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
                os.environ["HF_HOME"] = str(Path(tmp) / "hf")
                from huggingface_hub import snapshot_download

                t0 = time.perf_counter()
                snapshot_download(
                    repo_id=REPO,
                    repo_type="dataset",
                    local_dir=Path(tmp) / "hfdl",
                    endpoint=srv.url,
                    token=False,
                )
                dt = time.perf_counter() - t0
                print(f"snapshot_download (8 workers, to disk): {args.files / dt:.0f} files/s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
