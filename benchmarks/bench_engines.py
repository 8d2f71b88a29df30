"""Benchmark: the HTTP engine alone: httpx, the standard library's http.client and m3leo's
(hub/wire.py on urllib3), and with ``--baseline REV`` m3leo's engine as it was at a git
revision (``--baseline dda0015``: the hand-written hub/http11.py it replaced).

The same nginx site as bench_wire.py (the miniset region, a 302 per file to the content port),
the same work per file in both: GET the resolve URL without following it, GET the content URL,
write the body to ``<name>.part`` while hashing it with sha256, rename. 16 threads share one
``httpx.Client`` in the first, a keep-alive ``http.client`` connection per thread and host in
the second (what hub/wire.py did before), one ``Wire`` (its keep-alive pools) in the third.
Each runs in a fresh process, best of ``--repeat``.
This is the measurement behind the choice of engine in docs/design.md.

    .venv/bin/python benchmarks/bench_engines.py [--threads 16] [--repeat 3] [--tls]
        [--baseline REV]

``--tls`` serves the same files over HTTPS from an nginx of its own (a self-signed certificate
each client trusts) and times the content GETs alone, as the real Hub's content host is
reached: TLS reads a record (16 KB) at a time, so the engines differ more in their
per-read cost there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_wire  # noqa: E402
import nginx_hub  # noqa: E402

LOOP = r"""
import hashlib, http.client, json, os, ssl, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin, urlsplit
engine, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jobs = json.loads(open(sys.argv[4]).read())
CA = os.environ.get("BENCH_CA")  # --tls: content URLs over https, no resolve, this CA trusted

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
    client = httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
                          verify=CA or True)
    def one(job):
        url, dest = job
        loc = url
        if not CA:
            r = client.get(url)
            loc = urljoin(url, r.headers.get("location", url))
        with client.stream("GET", loc) as resp:
            save(dest, resp.iter_raw())
elif engine.startswith("m3leo"):  # today's package, or --baseline's on PYTHONPATH
    from m3leo_cli.config import load_settings
    from m3leo_cli.hub.wire import Wire
    wire = Wire(load_settings({"ca_bundle": CA} if CA else {}, env={}), pool=64)
    hdrs = {"user-agent": "bench", "accept-encoding": "identity"}
    def one(job):
        url, dest = job
        loc = url
        if not CA:
            r = wire.send("GET", url, hdrs)
            loc = urljoin(url, r.headers.get("location") or url)
            r.discard()
        with wire.send("GET", loc, hdrs) as r:
            save(dest, body(r))
else:
    def conn(u):
        pool = local.__dict__.setdefault("pool", {})
        if u.netloc not in pool and u.scheme == "https":
            context = ssl.create_default_context(cafile=CA)
            pool[u.netloc] = http.client.HTTPSConnection(u.hostname, u.port, context=context)
        elif u.netloc not in pool:
            pool[u.netloc] = http.client.HTTPConnection(u.hostname, u.port)
        return pool[u.netloc]
    def one(job):
        url, dest = job
        u = urlsplit(url)
        if not CA:
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


ENGINES = ["httpx", "http.client", "m3leo"]


def tls_site(work: Path, root: Path) -> tuple[Path, Path, str]:
    """nginx serving ``root``'s files over TLS with a self-signed certificate for 127.0.0.1:
    (its nginx.conf, the certificate to trust, the base URL)."""
    work.mkdir(parents=True, exist_ok=True)
    cert, key = work / "cert.pem", work / "key.pem"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
    port = nginx_hub._free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"worker_processes 2;\npid {work / 'nginx.pid'};\nerror_log {work / 'error.log'};\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; sendfile on; keepalive_requests 100000;\n"
        f"  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};\n"
        f"  uwsgi_temp_path {work}; scgi_temp_path {work};\n"
        f"  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert};\n"
        f"    ssl_certificate_key {key}; root {root}; }} }}\n"
    )
    return conf, cert, f"https://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=99)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tls", action="store_true", help="content GETs over https (no resolve)")
    ap.add_argument("--baseline", help="also run m3leo's engine as it was at this git revision")
    args = ap.parse_args()
    engines = list(ENGINES)
    pkg = None
    if args.baseline:
        pkg = bench_wire.baseline_package(args.baseline)
        engines.append(f"m3leo@{args.baseline}")
    root = bench_wire.source(args.tiles)
    files = bench_wire.files_of(root)
    env = dict(os.environ)
    if args.tls:
        work = bench_wire.OUT / "site-engines-tls"
        conf, cert, base = tls_site(work, root)
        base += f"/{bench_wire.REPO}/"
        env["BENCH_CA"] = str(cert)
        what = "content GET over TLS + write + sha256"
    else:
        answers = bench_wire.answers_for(root, bench_wire.REPO)
        work, conf, endpoint = bench_wire.site("site-engines", root, answers)
        base = f"{endpoint}/datasets/{bench_wire.REPO}/resolve/main/"
        what = "resolve + content GET + write + sha256"
    jobs = work / "jobs.json"
    jobs.write_text(json.dumps([(base + p, p) for p, _ in files]))
    best: dict[str, float] = {}
    with nginx_hub.Nginx(conf):
        for _ in range(args.repeat):
            for engine in engines:
                out = work / engine
                shutil.rmtree(out, ignore_errors=True)
                run_env = dict(env, PYTHONPATH=str(pkg)) if "@" in engine else env
                res = subprocess.run(
                    [sys.executable, "-c", LOOP, engine, str(args.threads), str(out), str(jobs)],
                    check=True, capture_output=True, text=True, env=run_env,
                )  # fmt: skip
                s = float(res.stdout.split()[-1])
                best[engine] = min(best.get(engine, s), s)
    print(f"{len(files)} files, {args.threads} threads, {what}")
    for engine, s in best.items():
        print(f"{engine:15} {s:6.2f} s  {len(files) / s:6.0f} files/s")
    for engine in engines[1:]:
        print(f"{engine} / httpx: {best['httpx'] / best[engine]:.2f}x")
    for engine in engines[2:]:
        print(f"{engine} / http.client: {best['http.client'] / best[engine]:.2f}x")
    for engine in engines[3:]:
        print(f"m3leo / {engine}: {best[engine] / best['m3leo']:.2f}x")


if __name__ == "__main__":
    main()
