"""Benchmark: from process start to a download's first request, as a user installs m3leo.

The dev venv (editable install, dev and train extras) pays for an import-path finder and many
more packages on start-up than a user's ``pip install m3leo-cli``, so this builds that user venv
once (``benchmarks/out/startup-venv``, no extras; this checkout reinstalled into it on every
run) and times both against
the nginx site of bench_wire.py: the epoch time before ``subprocess.run`` against the time
nginx logged the first request. Median of ``--runs``.

    .venv/bin/python benchmarks/bench_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_wire  # noqa: E402
import nginx_hub  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(__file__).resolve().parent / "out" / "startup-venv"


def user_venv() -> Path:
    """The venv a user would have, with this checkout's code installed afresh each run."""
    pip = str(VENV / "bin" / "pip")
    if not (VENV / "bin" / "m3leo").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([pip, "install", "-q", str(ROOT)], check=True)
    else:
        subprocess.run([pip, "install", "-q", "--no-deps", "--force-reinstall", str(ROOT)],
                       check=True)  # fmt: skip
    return VENV / "bin" / "m3leo"


def first_request(exe: Path, work: Path, endpoint: str, runs: int) -> float:
    log = work / "access.log"
    times = []
    for i in range(runs):
        data = work / f"data-{i}"
        shutil.rmtree(data, ignore_errors=True)
        env = dict(bench_wire._env(work, endpoint), M3LEO_DATA_DIR=str(data))
        before = log.stat().st_size
        os.sync()
        start = time.time()
        subprocess.run([str(exe), "download", "--edition", "miniset", "--region", "europe",
                        "--modality", "srtmdem", "-q"], env=env, check=True)  # fmt: skip
        with log.open() as fh:
            fh.seek(before)
            times.append(float(fh.readline().split()[0]) - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    root = bench_wire.source(99)
    answers = bench_wire.answers_for(root, bench_wire.REPO)
    work, conf, endpoint = bench_wire.site("site-startup", root, answers)
    user = user_venv()
    with nginx_hub.Nginx(conf):
        dev = Path(sys.executable).parent / "m3leo"
        for name, exe in (("pip install . (user)", user), ("dev venv (editable, extras)", dev)):
            s = first_request(exe, work, endpoint, args.runs)
            print(f"{name:28} first request {s:.3f} s after process start (median of {args.runs})")


if __name__ == "__main__":
    main()
