"""Samples per second through a torch DataLoader, from the store and from each streaming export,
against a bare rasterio / h5netcdf loop reading the same layers.

    .venv/bin/python benchmarks/bench_train_loader.py [--tiles 40] [--chip 448] [--repeat 3]
    .venv/bin/python benchmarks/bench_train_loader.py --inputs     # per baseline input, store only
    .venv/bin/python benchmarks/bench_train_loader.py --paired --workers 0 --formats zarr,hf

Writes a synthetic miniset (europe; s1grd-2020, gssic and s2rgbm-2020 inputs,
esaworldcover-2020 target, every tile complete), downloads it from the loopback Hub into a
store under --work, saves band statistics, exports the train split in every streaming format
(webdataset, Parquet, npz, zarr, tfrecord, hf, litdata; native grids, raw values), then times
one pass over the train split:

1. *bare read*: per tile, rasterio ``read(indexes)`` of the 8 S1 bands the ``s1grd`` baseline
   uses, h5netcdf ``coherence`` (whole variable) and rasterio ESA WorldCover: the floor;
2. ``StoreDataset`` and ``ExportDataset`` (``m3leo_cli.train``) through a ``DataLoader``
   (batch 8) with 0 and 2 workers: band selection, resampling onto the chip grid, decoding,
   nodata, the label's class indices, tensors. ``normalize`` off (exports are not normalised),
   plus one store run with it on.

``--inputs`` times the store loader (normalised, as training runs it) for the ``s1grd``,
``gssic`` and ``gssic+s2rgbm`` baselines against a bare loop reading the same layers.

Wall-clock medians of --repeat runs on a warm page cache; CPU time counts the worker processes.
By default no thread variable is set: the loader limits BLAS / OpenMP threads itself
(``m3leo_cli.train.threads``). ``--threads N`` sets ``OPENBLAS_NUM_THREADS`` & co. and torch's
threads to N before anything loads, as the docs once advised.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

S1 = tuple(f"{s}_{p}asc" for p in ("vv", "vh") for s in ("winter", "spring", "summer", "fall"))
GSSIC = tuple(f"coherence:{s}:36" for s in ("winter", "spring", "summer", "fall"))
S2 = tuple(f"{m}_{c}" for m in ("03", "06", "09", "12") for c in ("red", "green", "blue"))
BASELINES = {
    "s1grd": ("s1grd-2020",),
    "gssic": ("gssic",),
    "gssic+s2rgbm": ("gssic", "s2rgbm-2020"),
}
CLASSES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
# every format `m3leo train data.export` streams (zarr, tfrecord and hf need their extras)
EXPORT_FORMATS = ("webdataset", "parquet", "npz", "zarr", "tfrecord", "hf", "litdata")


def prepare(work: Path, tiles: int, chip: int, exports: bool = True) -> Path:
    """Source, store (download + stats --bands) and the exports; returns the data dir."""
    from m3leo_cli.cli import main
    from m3leo_cli.server import HubServer
    from m3leo_cli.testing.synth import SynthConfig, write_source

    data = work / f"data-{tiles}-{chip}"
    os.environ["M3LEO_DATA_DIR"] = str(data)
    os.environ["M3LEO_CONFIG"] = os.devnull
    sel = ["--edition", "miniset", "--region", "europe", "--quiet"]
    if (data / "done").exists():
        if exports:
            export_all(data, tiles, chip, sel)  # formats added since
        return data
    cfg = SynthConfig(
        regions=("europe",), editions=("miniset",), tiles=tiles, chip_px=chip,
        native_shape=(48, 60), coverage={"gssic": 1.0, "gunw": 1.0},
        datakinds=("s1grd-2020", "gssic", "s2rgbm-2020", "esaworldcover-2020"),
    )  # fmt: skip
    info = write_source(work / f"src-{tiles}-{chip}", cfg)
    with HubServer(info.root) as srv:
        os.environ["HF_ENDPOINT"] = srv.url
        assert main(["download", *sel, "-m", "s1grd", "-m", "gssic", "-m", "s2rgbm",
                     "-m", "esaworldcover"]) == 0  # fmt: skip
    assert main(["stats", "--bands", "--edition", "miniset", "--region", "europe",
                 "-m", "s1grd", "-m", "gssic", "-m", "s2rgbm", "--json"]) == 0  # fmt: skip
    if exports:
        export_all(data, tiles, chip, sel)
    (data / "done").write_text("")
    return data


def export_all(data: Path, tiles: int, chip: int, sel: list[str]) -> None:
    """The train split in every streaming format not exported yet (native grids, raw values)."""
    from m3leo_cli.cli import main

    for fmt in EXPORT_FORMATS:
        out = data.parent / f"{fmt}-{tiles}-{chip}"
        if (out / "metadata.json").exists():
            continue
        assert main(["export", "--format", fmt, "--out", str(out), *sel, "--split", "train",
                     "-m", "s1grd", "-m", "gssic", "--label", "esaworldcover",
                     "--shard-size", "8", "--overwrite", "--json"]) == 0  # fmt: skip


def spec(chip: int, normalize: bool, layers=("s1grd-2020", "gssic")):  # type: ignore[no-untyped-def]
    from m3leo_cli.train.layers import DataSpec, InputSpec, TargetSpec

    bands = {"s1grd-2020": S1, "gssic": GSSIC, "s2rgbm-2020": S2}
    return DataSpec(
        tuple(InputSpec(dk, bands[dk]) for dk in layers),
        TargetSpec("esaworldcover-2020", "Map", "classification", CLASSES),
        chip, normalize, regions=("europe",),
    )  # fmt: skip


def bare(samples, layers=("s1grd-2020", "gssic")) -> int:  # type: ignore[no-untyped-def]
    import h5netcdf
    import rasterio

    from m3leo_cli import spec as m3spec

    idx = [m3spec.S1GRD_BANDS.index(b) + 1 for b in S1]
    for s in samples:
        if "s1grd-2020" in layers:
            with rasterio.open(s.files["s1grd-2020"].path) as src:
                src.read(idx)
        if "gssic" in layers:
            with h5netcdf.File(s.files["gssic"].path, "r") as f:
                f.variables["coherence"][...]
        if "s2rgbm-2020" in layers:
            with rasterio.open(s.files["s2rgbm-2020"].path) as src:
                src.read()
        with rasterio.open(s.files["esaworldcover-2020"].path) as src:
            src.read(1)
    return len(samples)


def through_loader(ds, workers: int, persistent: bool = False) -> int:  # type: ignore[no-untyped-def]
    """One pass; ``persistent``: the workers are kept across passes, as the DataModule keeps
    them across epochs (the first pass starts them)."""
    import torch

    from m3leo_cli.train.threads import collate  # as the training DataModule's loaders

    key = (id(ds), workers)
    loader = _LOADERS.get(key) if persistent else None
    if loader is None:
        loader = torch.utils.data.DataLoader(
            ds, batch_size=8, num_workers=workers, collate_fn=collate,
            persistent_workers=persistent and workers > 0,
        )  # fmt: skip
        if persistent:
            _LOADERS[key] = loader
    return sum(len(b["tile_id"]) for b in loader)


_LOADERS: dict[tuple[int, int], object] = {}


def cpu() -> float:
    """CPU seconds of this process and its children, finished (rusage) and still running
    (persistent DataLoader workers: from /proc, via psutil when it is installed)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    try:
        import psutil
    except ImportError:
        return total
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def timed(fn, repeat: int) -> tuple[int, float, float]:  # type: ignore[no-untyped-def]
    walls, cpus, n = [], [], 0
    for _ in range(repeat):
        c0, t0 = cpu(), time.perf_counter()
        n = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu() - c0)
    return n, statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS / torch threads per process (default: set nothing)")  # fmt: skip
    ap.add_argument("--inputs", action="store_true",
                    help="the store loader per input: s1grd, gssic, gssic+s2rgbm")  # fmt: skip
    ap.add_argument("--tiles", type=int, default=40)
    ap.add_argument("--chip", type=int, default=448)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/m3leo-bench-train"))
    ap.add_argument("--formats", default=",".join(EXPORT_FORMATS),
                    help="comma-separated exports to time (default: all)")  # fmt: skip
    ap.add_argument("--workers", default="0,2", help="DataLoader workers to time, e.g. 0")
    ap.add_argument("--paired", action="store_true",
                    help="time the bare loop again right before each reader, in every repeat, "
                         "and report medians of those paired ratios (steadier on a shared "
                         "machine, whose load drifts between rows)")  # fmt: skip
    args = ap.parse_args()
    if args.threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)  # read when numpy / torch load: before imports
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = prepare(args.work, args.tiles, args.chip)
    if args.inputs:
        return per_input(args)
    from m3leo_cli.train.dataset import StoreDataset
    from m3leo_cli.train.exported import ExportDataset

    store = StoreDataset(spec(args.chip, False), "train")
    store_norm = StoreDataset(spec(args.chip, True), "train")
    exports = {
        fmt: ExportDataset(data.parent / f"{fmt}-{args.tiles}-{args.chip}", "train",
                           spec(args.chip, False))
        for fmt in args.formats.split(",")
    }  # fmt: skip
    samples = store.plan.samples
    n, wall0, cpu0 = timed(lambda: bare(samples), args.repeat)
    print(f"{n} train tiles, chip {args.chip} px, 12 input channels + label, batch 8")
    cols = ("reader", "workers", "samples/s (wall)", "vs bare (wall)", "samples per CPU-s",
            "vs bare (CPU)")  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|---|---|---|---|---|---|")
    print(f"| bare rasterio / h5netcdf loop | - | {n / wall0:.1f} | 1.00 | {n / cpu0:.1f} | 1.00 |")
    rows = [("store", store), ("store, normalised", store_norm)]
    rows += [(f"{fmt} export", ds) for fmt, ds in exports.items()]
    for label, ds in rows:
        for workers in (int(w) for w in args.workers.split(",")):
            run = lambda ds=ds, w=workers: through_loader(ds, w)  # noqa: E731
            if args.paired:
                m, wall, c, rw, rc = paired(lambda: bare(samples), run, args.repeat)
            else:
                m, wall, c = timed(run, args.repeat)
                rw, rc = wall0 / wall, cpu0 / c
            assert m == n, (label, m, n)
            print(f"| {label} | {workers} | {m / wall:.1f} | {rw:.2f} | {m / c:.1f} "
                  f"| {rc:.2f} |")  # fmt: skip


def paired(base, fn, repeat: int) -> tuple[int, float, float, float, float]:  # type: ignore[no-untyped-def]
    """``fn`` timed ``repeat`` times, each right after a run of ``base``: (samples, median wall,
    median CPU, median wall ratio base/fn, median CPU ratio base/fn)."""
    walls, cpus, rw, rc, n = [], [], [], [], 0
    for _ in range(repeat):
        _, w0, c0 = timed(base, 1)
        n, w, c = timed(fn, 1)
        walls.append(w)
        cpus.append(c)
        rw.append(w0 / w)
        rc.append(c0 / c)
    med = statistics.median
    return n, med(walls), med(cpus), med(rw), med(rc)


def per_input(args: argparse.Namespace) -> None:
    """The store loader (normalised) per baseline input against a bare loop of its layers."""
    from m3leo_cli.train.dataset import StoreDataset

    set_by = "none" if args.threads is None else str(args.threads)
    print(f"thread variables: {set_by}; chip {args.chip} px, batch 8, normalised")
    print("| input | tiles | workers | bare (samples/s) | store (samples/s) | vs bare (wall) "
          "| vs bare (CPU) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, layers in BASELINES.items():
        ds = StoreDataset(spec(args.chip, True, layers), "train")
        for workers in (0, 2):  # the bare loop timed next to each, the machine being shared
            n, wall0, cpu0 = timed(
                lambda ds=ds, layers=layers: bare(ds.plan.samples, layers), args.repeat
            )
            through_loader(ds, workers, persistent=True)  # workers started, as after epoch 1
            m, wall, c = timed(lambda ds=ds, w=workers: through_loader(ds, w, True), args.repeat)
            assert m == n
            print(f"| {name} | {n} | {workers} | {n / wall0:.1f} | {m / wall:.1f} | "
                  f"{wall0 / wall:.2f} | {cpu0 / c:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
