"""Export throughput per format against the bare cost of reading the same layers, and memory.

    .venv/bin/python benchmarks/bench_export.py [--tiles 48] [--chip 448] [--workers 2]

Writes a synthetic miniset (europe; s1grd-2020 + gssic inputs, esaworldcover-2020 label, every
tile complete) under --work, then:

1. *bare read*: every layer of every tile read in a plain loop, rasterio ``src.read()`` for
   GeoTIFFs and h5netcdf (every variable, whole) for netCDF: the floor any exporter pays;
2. *read_tile*: the same loop through ``m3leo_cli.read_tile`` (named bands, nodata masks);
3. each format's export of the same samples (``run_export``, threads = --workers), tiles/s and
   the ratio to (1) and (2);
4. each export read back by its own framework's reader, every array of every sample into
   numpy (npz: ``numpy.load``; webdataset: ``webdataset.WebDataset``; parquet: pyarrow; zarr:
   ``xarray.open_zarr``, one sample at a time; tfrecord: the ``tfrecord`` reader; hf:
   ``datasets.load_dataset`` into a fresh cache, then every row; litdata:
   ``litdata.StreamingDataset`` per split, every item), tiles/s and the ratio to (1);
5. peak RSS of a child process exporting N and 4N tiles (flat = streaming works).

Every timing is the median of --repeat runs on a warm page cache.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

LAYER_SETS = {
    "mixed": (("s1grd-2020", "input"), ("gssic", "input"), ("esaworldcover-2020", "label")),
    "tif": (("s1grd-2020", "input"), ("s2rgbm-2020", "input"), ("esaworldcover-2020", "label")),
}
# zarr, tfrecord, hf and litdata need their extras (the dev extra has them)
FORMATS = ("npz", "webdataset", "parquet", "geotiff", "zarr", "tfrecord", "hf", "litdata")


def make_source(work: Path, tiles: int, chip: int, layer_set: str):  # type: ignore[no-untyped-def]
    from m3leo_cli.testing.synth import SynthConfig, write_source

    cfg = SynthConfig(
        regions=("europe",), editions=("miniset",), tiles=tiles, chip_px=chip,
        native_shape=(48, 60), coverage={"gssic": 1.0, "gunw": 1.0},
        datakinds=tuple(name for name, _ in LAYER_SETS[layer_set]),
    )  # fmt: skip
    root = work / f"src-{tiles}-{chip}-{layer_set}"
    listing = work / f"rows-{tiles}-{chip}-{layer_set}.json"
    if not listing.exists():
        info = write_source(root, cfg)
        repo = info.repo("miniset", "europe")
        rows = [
            [tid, repo.tiles[tid].split, dk, str(repo.root / fi.path), fi.path, fi.sha256,
             fi.size, list(repo.tiles[tid].bbox)]
            for (dk, tid), fi in sorted(repo.tile_files.items())
        ]  # fmt: skip
        listing.write_text(json.dumps(rows))
    return json.loads(listing.read_text())


def plan_of(rows, layer_set: str, limit: int | None = None):  # type: ignore[no-untyped-def]
    from m3leo_cli.export import LayerFile, LayerSpec, join_samples

    layers = [LayerSpec(n, r) for n, r in LAYER_SETS[layer_set]]
    keep = set(sorted({r[0] for r in rows})[:limit] if limit else {r[0] for r in rows})
    joined = [
        (tid, split, "europe", dk, LayerFile(Path(path), repo_path, sha, "sha256", size),
         tuple(bbox))
        for tid, split, dk, path, repo_path, sha, size, bbox in rows
        if tid in keep
    ]  # fmt: skip
    return join_samples(layers, joined, edition="miniset")


def bare_read(plan) -> None:  # type: ignore[no-untyped-def]
    import h5netcdf
    import rasterio

    for s in plan.samples:
        for lf in s.files.values():
            if lf.path.suffix == ".tif":
                with rasterio.open(lf.path) as src:
                    src.read()
            else:
                with h5netcdf.File(lf.path, "r") as nc:
                    _read_group(nc)


def _read_group(group) -> None:  # type: ignore[no-untyped-def]
    for var in group.variables.values():
        var[...]
    for sub in group.groups.values():
        _read_group(sub)


def read_tile_loop(plan) -> None:  # type: ignore[no-untyped-def]
    from m3leo_cli.tiles.reader import read_tile

    for s in plan.samples:
        for name, lf in s.files.items():
            read_tile(lf.path, name)


def read_write_floor(plan, out: Path) -> None:  # type: ignore[no-untyped-def]
    """read_tile, then write the raw arrays to one file per tile and sha256 them: the least any
    lossless export must do (no container format, no metadata)."""
    import hashlib

    from m3leo_cli.tiles.reader import read_tile

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for s in plan.samples:
        h = hashlib.sha256()
        with open(out / f"{s.tile_id}.raw", "wb") as fh:
            for name, lf in s.files.items():
                data = read_tile(lf.path, name).data
                fh.write(memoryview(data).cast("B"))
                h.update(memoryview(data).cast("B"))


def timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall seconds, CPU seconds of this process, every thread, user + system)."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def export_once(plan, fmt: str, out: Path, workers: int) -> None:  # type: ignore[no-untyped-def]
    from m3leo_cli.export import ExportOptions, run_export

    shutil.rmtree(out, ignore_errors=True)
    run_export(plan, ExportOptions(fmt, out, shard_size=64, workers=workers))


def read_back(fmt: str, out: Path, layers: list[str], scratch: Path) -> int:  # noqa: C901
    """Every array of every sample of the export at ``out``, through ``fmt``'s own reader;
    returns the number of samples read."""
    import numpy as np

    n = 0
    if fmt == "npz":
        for f in sorted(out.glob("*/*.npz")):
            with np.load(f) as z:
                [z[name] for name in layers]
            n += 1
    elif fmt == "webdataset":
        import webdataset as wds

        urls = sorted(str(p) for p in out.glob("*/*.tar"))
        for sample in wds.WebDataset(urls, shardshuffle=False).decode():
            [sample[f"{name}.npy"] for name in layers]
            n += 1
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for f in sorted(out.glob("*/*.parquet")):
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(columns=layers):
                for name in layers:
                    col = batch.column(name)
                    for i in range(len(batch)):
                        cell = col[i].as_py()
                        dtype = pf.schema_arrow.field(name).metadata[b"dtype"].decode()
                        np.frombuffer(cell["data"], dtype).reshape(cell["shape"])
                n += len(batch)
    elif fmt == "zarr":
        import xarray as xr

        for split in sorted(p for p in out.iterdir() if (p / "zarr.json").exists()):
            groups = {name: xr.open_zarr(split, group=name, chunks=None) for name in layers}
            for i in range(groups[layers[0]].sizes["sample"]):
                for name, ds in groups.items():
                    ds[name].isel(sample=i).to_numpy()
                n += 1
    elif fmt == "tfrecord":
        from tfrecord.reader import tfrecord_loader

        for f in sorted(out.glob("*/*.tfrecord")):
            for r in tfrecord_loader(str(f), None):
                for name in layers:
                    dtype = r[f"{name}/dtype"].decode()
                    np.frombuffer(r[f"{name}/data"], dtype).reshape(tuple(r[f"{name}/shape"]))
                n += 1
    elif fmt == "hf":
        import datasets

        datasets.disable_progress_bars()
        shutil.rmtree(scratch, ignore_errors=True)
        dd = datasets.load_dataset(str(out), cache_dir=str(scratch))
        for split in dd.values():
            for row in split.with_format("numpy", dtype=None):
                [row[name] for name in layers]
                n += 1
    elif fmt == "litdata":
        import litdata

        for split in sorted(p for p in out.iterdir() if (p / "index.json").exists()):
            for item in litdata.StreamingDataset(str(split)):
                [item[name] for name in layers]
                n += 1
    else:  # geotiff: the copies are the store's files
        return 0
    return n


def child(args: argparse.Namespace) -> None:
    """Export the first --limit tiles and print this process's peak RSS (KiB)."""
    rows = make_source(args.work, args.tiles, args.chip, args.layers)
    plan = plan_of(rows, args.layers, args.limit)
    export_once(plan, args.child, args.work / f"mem-{args.child}", args.workers)
    print(json.dumps({"tiles": len(plan.samples), "peak_rss_mib": round(peak_rss_kib() / 1024, 1)}))


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM: unlike ru_maxrss, not inherited across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=48)
    ap.add_argument("--chip", type=int, default=448)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--layers", choices=sorted(LAYER_SETS), default="mixed")
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS runs")
    ap.add_argument("--work", type=Path, default=Path("/tmp/m3leo-bench-export"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args)
        return

    rows = make_source(args.work, args.tiles, args.chip, args.layers)
    plan = plan_of(rows, args.layers)
    n = len(plan.samples)
    mb = sum(lf.size or 0 for s in plan.samples for lf in s.files.values()) / 1e6
    names = ", ".join(name for name, _ in LAYER_SETS[args.layers])
    print(f"{n} tiles x ({names}): {mb:.0f} MB of source files, chip {args.chip} px")
    bare_read(plan)  # warm the page cache
    # The machine is shared, so wall time swings with other people's load. Ratios use CPU time
    # (all threads, user + system: what the work itself costs), each export paired with a
    # bare-read run right before it; wall-clock tiles/s are shown too. Medians of --repeat.
    floor_out = args.work / "out-floor"
    base = [
        (timed(lambda: bare_read(plan)), timed(lambda: read_tile_loop(plan)),
         timed(lambda: read_write_floor(plan, floor_out)))
        for _ in range(args.repeat)
    ]  # fmt: skip
    med = statistics.median
    print("| reader | tiles/s (wall) | tiles per CPU-s | vs bare read (CPU) |\n|---|---|---|---|")
    for k, label in enumerate(
        ("bare read (rasterio / h5netcdf loop)", "tiles.read_tile loop",
         "read_tile + write raw arrays + sha256 (floor)")
    ):  # fmt: skip
        wall = med(x[k][0] for x in base)
        cpu = med(x[k][1] for x in base)
        ratio = med(x[0][1] / x[k][1] for x in base)
        print(f"| {label} | {n / wall:.1f} | {n / cpu:.1f} | {ratio:.2f} |")
    floor_cpu = med(x[2][1] for x in base)
    print(
        "\n| format | workers | tiles/s (wall) | tiles per CPU-s | vs bare read (CPU) "
        "| vs floor (CPU) |\n|---|---|---|---|---|---|"
    )
    formats = [f for f in args.formats.split(",") if f]
    for fmt in formats:
        for w in sorted({1, args.workers}):
            out = args.work / f"out-{fmt}"
            runs = []
            for _ in range(args.repeat):
                b = timed(lambda: bare_read(plan))
                e = timed(lambda fmt=fmt, out=out, w=w: export_once(plan, fmt, out, w))
                runs.append((b, e))
            wall = med(e[0] for _, e in runs)
            cpu = med(e[1] for _, e in runs)
            vs_bare = med(b[1] / e[1] for b, e in runs)
            print(
                f"| {fmt} | {w} | {n / wall:.1f} | {n / cpu:.1f} | {vs_bare:.2f} "
                f"| {floor_cpu / cpu:.2f} |",
                flush=True,
            )

    print(
        "\n| format read back by its own reader | tiles/s (wall) | tiles per CPU-s "
        "| vs bare read (CPU) |\n|---|---|---|---|"
    )
    layers = [name for name, _ in LAYER_SETS[args.layers]]
    for fmt in formats:
        if fmt == "geotiff":
            continue  # the store's own files: the bare read is their read
        out, got = args.work / f"out-{fmt}", []
        for _ in range(args.repeat):
            b = timed(lambda: bare_read(plan))
            count: list[int] = []
            r = timed(lambda fmt=fmt, out=out, count=count: count.append(
                read_back(fmt, out, layers, args.work / "hf-cache")))  # fmt: skip
            assert count == [n], f"{fmt}: read {count} samples of {n}"
            got.append((b, r))
        wall = med(r[0] for _, r in got)
        cpu = med(r[1] for _, r in got)
        ratio = med(b[1] / r[1] for b, r in got)
        print(f"| {fmt} | {n / wall:.1f} | {n / cpu:.1f} | {ratio:.2f} |", flush=True)

    if args.no_memory:
        return
    print("\n| format | tiles | peak RSS (MiB) |\n|---|---|---|")
    for fmt in formats:
        for limit in (max(1, n // 4), n):
            cmd = [sys.executable, __file__, "--child", fmt, "--limit", str(limit),
                   "--tiles", str(args.tiles), "--chip", str(args.chip),
                   "--workers", str(args.workers), "--work", str(args.work),
                   "--layers", args.layers]  # fmt: skip
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
            print(f"| {fmt} | {res['tiles']} | {res['peak_rss_mib']} |")


if __name__ == "__main__":
    main()
