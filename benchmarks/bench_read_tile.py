"""netCDF ``tiles.read_tile`` against a bare h5netcdf read of the same files.

    .venv/bin/python benchmarks/bench_read_tile.py [--tiles 10] [--repeat 3]

Writes a synthetic conus miniset (gssic, one gunw period, biomass; real native grid 48 x 60,
every tile present) under --work once, then per family times, in CPU time per file (best of
--repeat, warm page cache):

1. *bare*: h5netcdf opens the file and reads every variable whole (coordinates included);
2. *read_tile*: ``m3leo_cli.read_tile`` (all bands: labels, nodata mask, georeferencing);
3. *read_tile, 2 bands*: the first and last band only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATAKINDS = ("gssic", "gunw_2020-01-01_2020-03-31", "biomass-2020")


def make_source(work: Path, tiles: int) -> list[tuple[Path, str]]:
    from m3leo_cli.testing.synth import SynthConfig, write_source

    root = work / f"src-{tiles}"
    if not root.exists():
        cfg = SynthConfig(
            regions=("conus",), editions=("miniset",), tiles=tiles, chip_px=448,
            native_shape=(48, 60), coverage={"gssic": 1.0, "gunw": 1.0}, datakinds=DATAKINDS,
        )  # fmt: skip
        write_source(root, cfg)
    return [(p, p.parent.name) for p in sorted((root / "M3LEO-miniset").rglob("*.nc"))]


def bare(path: Path, datakind: str) -> Any:
    import h5netcdf
    import numpy as np

    with h5netcdf.File(path, "r", phony_dims="sort") as f:
        g = f
        if datakind.startswith("gunw"):
            g = f.groups["science"].groups["grids"].groups["data"]
        return [np.asarray(v[...]) for v in g.variables.values()]


def cpu_per_file(
    fn: Callable[[Path, str], Any], files: list[tuple[Path, str]], repeat: int
) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for p, dk in files:
            fn(p, dk)
        best = min(best, (time.process_time() - t0) / len(files))
    return best * 1e3


def main() -> None:
    from m3leo_cli.tiles import reader as tiles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/m3leo-bench-read-tile"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    files = make_source(args.work, args.tiles)
    two = {}
    for p, dk in files:
        names = tiles.band_names(p, dk)
        two[p] = [names[0], names[-1]]
    readers: dict[str, Callable[[Path, str], Any]] = {
        "bare h5netcdf": bare,
        "read_tile": lambda p, dk: tiles.read_tile(p, dk),
        "read_tile, 2 bands": lambda p, dk: tiles.read_tile(p, dk, bands=two[p]),
    }
    print(
        "| family | bands | "
        + " | ".join(f"{r} (ms CPU)" for r in readers)
        + " | read_tile / bare |"
    )
    print("|---|---|" + "---|" * (len(readers) + 1))
    for dk in DATAKINDS:
        sel = [(p, d) for p, d in files if d == dk]
        if not sel:
            continue
        ms = [cpu_per_file(fn, sel, args.repeat) for fn in readers.values()]
        nb = len(tiles.band_names(*sel[0]))
        cells = " | ".join(f"{m:.1f}" for m in ms)
        print(f"| {dk.split('_')[0].split('-')[0]} | {nb} | {cells} | {ms[1] / ms[0]:.2f} |")


if __name__ == "__main__":
    main()
