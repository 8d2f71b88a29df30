"""Benchmark: the HTTP engine alone: httpx, the standard library's http.client and m3leo's own
(hub/http11.py under hub/wire.py).

The same nginx site as bench_wire.py (the miniset region, a 302 per file to the content port),
the same work per file in both: GET the resolve URL without following it, GET the content URL,
write the body to ``<name>.part`` while hashing it with sha256, rename. 16 threads share one
``httpx.Client`` in the first, a keep-alive ``http.client`` connection per thread and host in
the second (what hub/wire.py did before), one ``Wire`` (its keep-alive pools) in the third.
Each runs in a fresh process, best of ``--repeat``.
This is the measurement behind the choice of engine in docs/design.md.

    .venv/bin/python benchmarks/bench_engines.py [--threads 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_wire  # noqa: E402
import nginx_hub  # noqa: E402

LOOP = r"""
import hashlib, http.client, json, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin, urlsplit
engine, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jobs = json.loads(open(sys.argv[4]).read())
for _, dest in jobs:
    os.makedirs(os.path.dirname(os.path.join(out, dest)), exist_ok=True)
local = threading.local()

def save(dest, chunks):
    h, part = hashlib.sha256(), os.path.join(out, dest) + ".part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for c in chunks:
        os.write(fd, c)
        h.update(c)
    os.close(fd)
    os.replace(part, os.path.join(out, dest))

def body(r):  # readinto one buffer per thread (both http.client and m3leo's engine)
    view = local.__dict__.setdefault("buf", memoryview(bytearray(1 << 20)))
    while n := r.readinto(view):
        yield view[:n]

if engine == "httpx":
    import httpx
    client = httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
    def one(job):
        url, dest = job
        r = client.get(url)
        loc = urljoin(url, r.headers.get("location", url))
        with client.stream("GET", loc) as resp:
            save(dest, resp.iter_raw())
elif engine == "m3leo (http11)":
    from m3leo_cli.config import load_settings
    from m3leo_cli.hub.wire import Wire
    wire = Wire(load_settings({}, env={}), pool=64)
    hdrs = {"user-agent": "bench", "accept-encoding": "identity"}
    def one(job):
        url, dest = job
        r = wire.send("GET", url, hdrs)
        loc = urljoin(url, r.headers.get("location") or url)
        r.discard()
        with wire.send("GET", loc, hdrs) as r:
            save(dest, body(r))
else:
    def conn(u):
        pool = local.__dict__.setdefault("pool", {})
        if u.netloc not in pool:
            pool[u.netloc] = http.client.HTTPConnection(u.hostname, u.port)
        return pool[u.netloc]
    def one(job):
        url, dest = job
        u = urlsplit(url)
        c = conn(u)
        c.request("GET", u.path)
        r = c.getresponse()
        r.read()
        u = urlsplit(urljoin(url, r.getheader("location") or url))
        c = conn(u)
        c.request("GET", u.path)
        save(dest, body(c.getresponse()))
t0 = time.perf_counter()
with ThreadPoolExecutor(threads) as ex:
    list(ex.map(one, jobs))
print(time.perf_counter() - t0)
"""


ENGINES = ("httpx", "http.client", "m3leo (http11)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=99)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = bench_wire.source(args.tiles)
    files = bench_wire.files_of(root)
    answers = bench_wire.answers_for(root, bench_wire.REPO)
    work, conf, endpoint = bench_wire.site("site-engines", root, answers)
    base = f"{endpoint}/datasets/{bench_wire.REPO}/resolve/main/"
    jobs = work / "jobs.json"
    jobs.write_text(json.dumps([(base + p, p) for p, _ in files]))
    best: dict[str, float] = {}
    with nginx_hub.Nginx(conf):
        for _ in range(args.repeat):
            for engine in ENGINES:
                out = work / engine
                shutil.rmtree(out, ignore_errors=True)
                res = subprocess.run(
                    [sys.executable, "-c", LOOP, engine, str(args.threads), str(out), str(jobs)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                s = float(res.stdout.split()[-1])
                best[engine] = min(best.get(engine, s), s)
    print(f"{len(files)} files, {args.threads} threads, resolve + content GET + write + sha256")
    for engine, s in best.items():
        print(f"{engine:15} {s:6.2f} s  {len(files) / s:6.0f} files/s")
    for engine in ENGINES[1:]:
        print(f"{engine} / httpx: {best['httpx'] / best[engine]:.2f}x")
    print(f"m3leo (http11) / http.client: {best['http.client'] / best['m3leo (http11)']:.2f}x")


if __name__ == "__main__":
    main()
