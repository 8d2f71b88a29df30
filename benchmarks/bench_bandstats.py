"""Benchmark: per-band statistics over a few hundred synthetic tiles.

Compares ``bandstats.compute_band_stats`` (the engine of ``m3leo stats --bands``: one streaming
pass, exact Chan merges, fixed-bin histograms) run serially, with threads and with processes,
against the obvious baseline: a plain single-process rasterio loop that keeps every value of
every band in memory and calls numpy at the end (mean, std, min, max, percentiles).

Each variant runs in its own interpreter (warm page cache, one warm-up pass first), so peak RSS
is per variant. Usage:

    .venv/bin/python benchmarks/bench_bandstats.py [--tiles 300] [--chip 224] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATAKINDS = ("s1grd-2020", "s2rgbm-2020")
PCTS = (2.0, 50.0, 98.0)


def files_of(root: Path) -> list[tuple[str, Path]]:
    out = []
    for dk in DATAKINDS:
        out += [(dk, p) for p in sorted(root.rglob(f"{dk}/*.tif"))]
    return out


def baseline(files: list[tuple[str, Path]]) -> int:
    """Plain rasterio loop: read everything, keep all values, numpy at the end."""
    import numpy as np
    import rasterio

    values: dict[tuple[str, int], list[np.ndarray]] = {}
    for dk, path in files:
        with rasterio.open(path) as src:
            data = src.read()
        if data.dtype == np.uint16:
            data = data.view(np.int16)
        for i in range(data.shape[0]):
            values.setdefault((dk, i), []).append(data[i].ravel())
    n = 0
    for parts in values.values():
        x = np.concatenate(parts).astype(np.float64)
        _ = (x.mean(), x.std(), x.min(), x.max(), np.percentile(x, PCTS))
        n += 1
    return n


def m3leo(files: list[tuple[str, Path]], executor: str, workers: int) -> int:
    from m3leo_cli.tiles.bandstats import compute_band_stats

    return len(compute_band_stats(files, percentiles=PCTS, workers=workers, executor=executor))


def run_variant(root: Path, variant: str, repeat: int) -> dict[str, float]:
    files = files_of(root)
    fn = {
        "baseline": lambda: baseline(files),
        "serial": lambda: m3leo(files, "serial", 1),
        "threads": lambda: m3leo(files, "thread", 2),
        "processes": lambda: m3leo(files, "process", 2),
    }[variant]
    fn()  # warm-up: page cache, imports
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": statistics.median(times), "runs": times, "files": len(files),
            "peak_rss_mib": max(rss, kids)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=300)
    ap.add_argument("--chip", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--variant")
    ap.add_argument("--root")
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(Path(args.root), args.variant, args.repeat)))
        return
    from m3leo_cli.testing.synth import SynthConfig, write_source

    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig(regions=("europe",), editions=("miniset",), tiles=args.tiles,
                          chip_px=args.chip, datakinds=DATAKINDS)  # fmt: skip
        write_source(Path(tmp), cfg)
        tiles = len(files_of(Path(tmp))) // len(DATAKINDS)
        results = {}
        for variant in ("baseline", "serial", "threads", "processes"):
            out = subprocess.run(
                [sys.executable, __file__, "--variant", variant, "--root", tmp,
                 "--repeat", str(args.repeat)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            results[variant] = json.loads(out.stdout)
    base = results["baseline"]["seconds"]
    print(f"{tiles} tiles x {len(DATAKINDS)} datakinds ({', '.join(DATAKINDS)}), "
          f"chip {args.chip}x{args.chip}, median of {args.repeat}")  # fmt: skip
    print("| variant | s | tiles/s | vs baseline | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']:.2f} | {tiles / r['seconds']:.0f} | "
              f"{base / r['seconds']:.2f}x | {r['peak_rss_mib']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
