"""Training throughput on a GPU: is `m3leo train` fed fast enough by the store dataset?

    python benchmarks/bench_train_gpu.py [--tiles 160] [--workers 0,4,8,12] [--epochs 3]

Builds the synthetic store of ``bench_train_loader`` (europe, s1grd-2020 + gssic +
esaworldcover-2020 at the real 448 px chip; no exports), then for each DataLoader worker count:

1. *loader*: one pass of ``StoreDataset`` (the ``esawc/s1grd`` inputs, normalised) through a
   ``DataLoader`` with ``pin_memory`` and a non-blocking copy to the GPU: what the data side can
   deliver;
2. *train*: ``m3leo_cli.train.train(["experiment=esawc/s1grd", ...])`` (the UNet baseline,
   ``trainer.accelerator=gpu``) for ``--epochs`` epochs at each ``--precision``; epochs after the
   first are timed from the library's per-epoch progress events (train + validation tiles / s).

A training rate well under the loader rate means the GPU step is the limit; equal rates mean
the loader is. Needs a CUDA device and the train extra; CI does not run it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_train_loader import prepare  # noqa: E402

S1 = [f"{s}_{p}asc" for p in ("vv", "vh") for s in ("winter", "spring", "summer", "fall")]


DEVICE = "cuda"


def loader_rate(workers: int, batch: int) -> float:
    import torch

    from m3leo_cli.train.dataset import StoreDataset
    from m3leo_cli.train.layers import DataSpec, InputSpec, TargetSpec

    classes = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
    data = DataSpec(
        (InputSpec("s1grd-2020", tuple(S1)),),
        TargetSpec("esaworldcover-2020", "Map", "classification", classes),
        448, True, regions=("europe",),
    )  # fmt: skip
    ds = StoreDataset(data, "train")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch, num_workers=workers, pin_memory=True, shuffle=True
    )
    t0, n = time.perf_counter(), 0
    for b in loader:
        b["image"].to(DEVICE, non_blocking=True)
        b["mask"].to(DEVICE, non_blocking=True)
        n += len(b["tile_id"])
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def train_rate(workers: int, batch: int, epochs: int, precision: str, work: Path) -> dict:
    import torch

    from m3leo_cli.train.run import train

    stamps: list[float] = []

    def progress(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind == "advance":
            stamps.append(time.perf_counter())

    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    accel = "gpu" if DEVICE == "cuda" else "cpu"
    t0 = time.perf_counter()
    res = train(
        [
            "experiment=esawc/s1grd", "data.edition=miniset", "data.regions=[europe]",
            f"trainer.max_epochs={epochs}", f"trainer.accelerator={accel}",
            f"trainer.precision={precision}", f"loader.num_workers={workers}",
            f"loader.batch_size={batch}", f"hydra.run.dir={work}/runs/w{workers}-{precision}",
        ],
        progress=progress,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    tiles = res.samples.get("train", 0) + res.samples.get("val", 0)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {
        "rate": tiles / statistics.median(gaps) if gaps else float("nan"),
        "first_epoch_s": stamps[0] - t0 if stamps else float("nan"),
        "wall_s": wall,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0,
        "loss": res.metrics.get("train_loss_epoch", res.metrics.get("train_loss", float("nan"))),
        "tiles": tiles,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=160)
    ap.add_argument("--workers", default="0,4,8,12")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--precision", default="32-true,bf16-mixed")
    ap.add_argument("--work", type=Path, default=Path("/tmp/m3leo-bench-train-gpu"))
    ap.add_argument("--cpu", action="store_true", help="dry run of the harness without a GPU")
    args = ap.parse_args()
    global DEVICE
    DEVICE = "cpu" if args.cpu else "cuda"
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import torch

    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures training on a GPU")
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prepare(args.work, args.tiles, 448, exports=False)
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU"
    print(f"store ready in {time.perf_counter() - t0:.0f} s; {name}, "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    print("| workers | loader tiles/s | precision | train+val tiles/s | first epoch s | "
          "peak GPU GiB | last train loss |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for w in (int(x) for x in args.workers.split(",")):
        lr = loader_rate(w, args.batch)
        for p in args.precision.split(","):
            r = train_rate(w, args.batch, args.epochs, p, args.work)
            print(f"| {w} | {lr:.0f} | {p} | {r['rate']:.0f} | {r['first_epoch_s']:.1f} | "
                  f"{r['peak_gib']:.1f} | {r['loss']:.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
