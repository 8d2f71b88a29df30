"""How fast the synthetic source is written, and how big it is.

    .venv/bin/python benchmarks/bench_synth.py [--runs 3] [--tiles 10] [--real-tiles 20]

Cases, each written into a fresh temporary folder and timed in-process (median of --runs):

- default:  SynthConfig() - europe, both editions, 10 tiles, 64 px chips (what tests use)
- conus:    conus (all four GUNW periods), both editions, --tiles tiles
- real-size: europe, both editions, --real-tiles tiles at 448 px and a (48, 60) native grid

Prints files, bytes, seconds and MB/s per case, and the process's peak RSS at the end.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from m3leo_cli.testing.synth import SynthConfig, write_source


def _time(config: SynthConfig, runs: int) -> tuple[float, int, int]:
    seconds = []
    files = size = 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            info = write_source(Path(tmp), config)
            seconds.append(time.perf_counter() - start)
            files, size = info.total_files, info.total_bytes
    return statistics.median(seconds), files, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tiles", type=int, default=10)
    ap.add_argument("--real-tiles", type=int, default=20)
    args = ap.parse_args()
    cases = {
        "default": SynthConfig(),
        "conus": SynthConfig(regions=("conus",), tiles=args.tiles),
        "real-size": SynthConfig(tiles=args.real_tiles, chip_px=448, native_shape=(48, 60)),
    }
    print(f"{'case':<10} {'files':>6} {'MB':>8} {'seconds':>8} {'MB/s':>7}")
    for name, cfg in cases.items():
        sec, files, size = _time(cfg, args.runs)
        print(f"{name:<10} {files:>6} {size / 1e6:>8.1f} {sec:>8.2f} {size / 1e6 / sec:>7.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
