"""The cost of integrity on read: the same loops with ``check_intact`` on and replaced by the bare
existence check ``read_tile`` made before (issue 27), interleaved repeats, wall and CPU medians.

    .venv/bin/python benchmarks/bench_integrity.py export [--tiles 32] [--chip 448] [--repeat 9]
    .venv/bin/python benchmarks/bench_integrity.py train [--tiles 24] [--chip 448] [--repeat 7]

``export`` uses bench_export's synthetic source (its tree made a store: every file recorded) and
times ``read_tile`` over every layer, and npz/webdataset exports with 2 threads. ``train``
uses bench_train_loader's downloaded store (downloads record every file) and times one pass of
``StoreDataset`` through a DataLoader with 0 workers. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def _cpu() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _use(check: bool) -> None:
    import m3leo_cli.tiles.integrity as tint
    import m3leo_cli.tiles.reader as reader
    from m3leo_cli.tiles.model import check_exists

    def bare(path, expected_sha256=None):  # type: ignore[no-untyped-def]
        check_exists(Path(path))

    fn = _ON if check else bare
    reader.check_intact = fn  # type: ignore[assignment]
    tint.check_intact = fn  # type: ignore[assignment]


def ab(name: str, fn: Callable[[], object], repeat: int) -> None:
    walls: dict[bool, list[float]] = {True: [], False: []}
    cpus: dict[bool, list[float]] = {True: [], False: []}
    fn()  # warm the page cache
    for i in range(repeat):
        for on in (True, False) if i % 2 == 0 else (False, True):
            _use(on)
            c, t = _cpu(), time.perf_counter()
            fn()
            walls[on].append(time.perf_counter() - t)
            cpus[on].append(_cpu() - c)
    _use(True)
    w1, w0 = statistics.median(walls[True]), statistics.median(walls[False])
    c1, c0 = statistics.median(cpus[True]), statistics.median(cpus[False])
    print(json.dumps({
        "bench": name, "runs": repeat, "wall_with_s": round(w1, 3), "wall_without_s": round(w0, 3),
        "wall_pct": round(100 * (w1 / w0 - 1), 1), "cpu_with_s": round(c1, 3),
        "cpu_without_s": round(c0, 3), "cpu_pct": round(100 * (c1 / c0 - 1), 1),
    }), flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=("export", "train"))
    ap.add_argument("--tiles", type=int, default=32)
    ap.add_argument("--chip", type=int, default=448)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--work", type=Path, default=Path("/tmp/m3leo-bench-integrity"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from m3leo_cli.store import integrity

    if args.which == "export":
        import bench_export as be

        rows = be.make_source(args.work, args.tiles, args.chip, "mixed")
        plan = be.plan_of(rows, "mixed")
        (args.work / f"src-{args.tiles}-{args.chip}-mixed" / ".m3leo").mkdir(exist_ok=True)
        for s in plan.samples:
            for lf in s.files.values():
                integrity.record(lf.path, lf.checksum)
        ab("read_tile loop", lambda: be.read_tile_loop(plan), args.repeat)
        for fmt in ("npz", "webdataset"):
            out = args.work / f"out-{fmt}"
            ab(f"export {fmt}, 2 threads", lambda f=fmt, o=out: be.export_once(plan, f, o, 2),
               args.repeat)  # fmt: skip
    else:
        import bench_train_loader as bt
        import torch

        torch.set_num_threads(1)
        bt.prepare(args.work, args.tiles, args.chip, exports=False)
        from m3leo_cli.train.dataset import StoreDataset

        ds = StoreDataset(bt.spec(args.chip, False), "train")
        ab(f"StoreDataset, {len(ds)} tiles, 0 workers", lambda: bt.through_loader(ds, 0),
           args.repeat)  # fmt: skip


if __name__ == "__main__":
    from m3leo_cli.tiles.integrity import check_intact as _ON

    main()
