"""Benchmark: the local engine against a 2-worker Dask LocalCluster on the same jobs.

Jobs: ``m3leo stats --bands`` (band statistics) and ``m3leo export --format npz`` over one
synthetic miniset region, each run as a user types it, in a fresh process, against the same
store. The Dask runs connect to a LocalCluster started once beforehand (its start-up is
reported apart: a cluster is started once and serves many commands). The outputs of both
engines are compared byte for byte; a difference fails the benchmark.

    .venv/bin/python benchmarks/bench_dist.py [--tiles 120] [--chip 224]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        # metadata.json records the command line, which differs by the engine flags
        if p.is_file() and ".m3leo-export" not in p.parts and p.name != "metadata.json":
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=120)
    ap.add_argument("--chip", type=int, default=224)
    args = ap.parse_args()
    import distributed

    from m3leo_cli.server import HubServer
    from m3leo_cli.testing.synth import SynthConfig, write_source

    m3leo = str(Path(sys.executable).parent / "m3leo")
    work = Path(tempfile.mkdtemp(prefix="m3leo-bench-dist-"))
    cfg = SynthConfig(regions=("europe",), editions=("miniset",), tiles=args.tiles,
                      chip_px=args.chip, datakinds=("s1grd-2020", "s2rgbm-2020",
                      "esaworldcover-2020"))  # fmt: skip
    write_source(work / "src", cfg)
    sel = ["--edition", "miniset", "--region", "europe"]
    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    started = time.perf_counter() - t0
    with HubServer(work / "src") as hub:
        env = dict(os.environ, M3LEO_DATA_DIR=str(work / "data"), HF_ENDPOINT=hub.url,
                   M3LEO_CONFIG=os.devnull)  # fmt: skip
        subprocess.run([m3leo, "download", *sel, "-q"], env=env, check=True)
    rows = []
    engines = {
        "local": [],
        "dask x2": ["--engine", "dask", "--scheduler", cluster.scheduler_address],
    }
    outs = {}
    for name, flags in engines.items():
        s = run([m3leo, "stats", "--bands", *sel, "--json", *flags], env)
        out = work / f"npz-{name.replace(' ', '')}"
        e = run([m3leo, "export", *sel, "-m", "s1grd-2020", "-m", "s2rgbm-2020", "--label",
                 "esaworldcover-2020", "--format", "npz", "--out", str(out), "-q", *flags],
                env)  # fmt: skip
        outs[name] = digest(out)
        rows.append((name, s, e))
    cluster.close()
    assert outs["local"] == outs["dask x2"], "the engines wrote different bytes"
    print(f"{args.tiles} tiles x 3 datakinds, {args.chip} px; LocalCluster start {started:.2f} s")
    print(f"{'engine':10} {'stats --bands':>14} {'export npz':>11}")
    for name, s, e in rows:
        print(f"{name:10} {s:13.2f}s {e:10.2f}s")
    (_, s0, e0), (_, s1, e1) = rows
    print(f"ratio local/dask: stats {s0 / s1:.2f}x, export {e0 / e1:.2f}x (same bytes)")


if __name__ == "__main__":
    main()
