"""``m3leo ingest`` peak memory against raster size: windowed reads keep it flat.

    .venv/bin/python benchmarks/bench_ingest.py [--work /tmp/m3leo-bench-ingest]

Grids a 274-chip local region (an AOI in the Alps, UTM zone 32N), writes two tiled, deflated
uint16 rasters over it in EPSG:32632 (20 m: 6000 x 4000 pixels; 5 m: 24000 x 16000, 16 times
the pixels), and ingests each with bilinear resampling onto 448 px chips in a fresh process,
reporting the wall time and the process's peak resident memory (``VmHWM``: ``ru_maxrss``
would also count the parent's peak from writing the rasters, which survives ``exec``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

AOI = "POLYGON ((7.1 45.8, 7.9 45.75, 8.3 46.2, 7.6 46.45, 7.2 46.3, 7.1 45.8))"
RUN = """
import json, sys
from pathlib import Path
from m3leo_cli.aoi.ingest import ingest
info = ingest(Path(sys.argv[1]), "bench", sys.argv[2], [Path(sys.argv[3])],
              resampling="bilinear", chip_px=448)
hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
print(json.dumps({"chips": info["chips_written"], "peak_mb": int(hwm.split()[1]) / 1024}))
"""


def make_raster(path: Path, width: int, height: int, res: float) -> None:
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    if path.exists():
        return
    t = Affine(res, 0, 320000, 0, -res, 5160000)
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                   crs="EPSG:32632", transform=t, nodata=0, tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, height, 1024):
            h = min(1024, height - r0)
            rows = np.arange(r0, r0 + h)[:, None] % 1000
            dst.write((rows + np.arange(width)[None, :] % 500 + 1).astype("uint16"), 1,
                      window=Window(0, r0, width, h))  # fmt: skip
        dst.set_band_description(1, "value")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/m3leo-bench-ingest"))
    args = ap.parse_args()
    from m3leo_cli.aoi.create import create_region

    data = args.work / "data"
    if not (data / "local" / "bench").exists():
        create_region("bench", data_dir=data, aoi=AOI, bands=20, angle=-0.5)
    for res, (w, h) in ((20.0, (6000, 4000)), (5.0, (24000, 16000))):
        raster = args.work / f"raster-{int(res)}m.tif"
        make_raster(raster, w, h, res)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", RUN, str(data), f"v{int(res)}m", str(raster)],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{w} x {h} px ({w * h / 1e6:.0f} Mpx): {r['chips']} chips in "
              f"{time.perf_counter() - t0:.1f} s, peak {r['peak_mb']:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
