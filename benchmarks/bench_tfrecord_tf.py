"""A TFRecord export read by TensorFlow's own tf.data, value for value, and its speed.

    .venv/bin/python benchmarks/bench_tfrecord_tf.py --tf-python /path/to/tf-venv/bin/python
        [--tiles 48] [--chip 448] [--work /tmp/m3leo-bench-tf]

TensorFlow is not a dependency of m3leo (the export is written without it): give the Python
of a separate environment that has it (``python -m venv tf && tf/bin/pip install
tensorflow-cpu``). This script (in m3leo's .venv) writes a synthetic miniset, exports it with
``--format tfrecord`` and records the sha256 of every layer of every tile as ``read_tile``
returns it; then runs itself under ``--tf-python`` to read the shards with
``tf.data.TFRecordDataset`` + ``tf.io.parse_single_example`` (the spec from features.json) +
``tf.io.decode_raw``, compare every array's digest, and time samples/s (median of --repeat
passes; the first pass warms the page cache).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def prepare(args: argparse.Namespace) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_export import make_source, plan_of

    from m3leo_cli.export import ExportOptions, run_export
    from m3leo_cli.tiles.reader import read_tile

    args.work.mkdir(parents=True, exist_ok=True)
    rows = make_source(args.work, args.tiles, args.chip, "mixed")
    plan = plan_of(rows, "mixed")
    out = args.work / f"tfrecord-{args.tiles}-{args.chip}"
    if not (out / "metadata.json").exists():
        run_export(plan, ExportOptions("tfrecord", out, shard_size=64, overwrite=True))
    want = {
        f"{s.tile_id}/{name}": hashlib.sha256(read_tile(lf.path, name).data.tobytes()).hexdigest()
        for s in plan.samples
        for name, lf in s.files.items()
    }
    (out.parent / "expected.json").write_text(json.dumps(want))
    return out


def read_with_tf(out: Path, repeat: int) -> None:
    import numpy as np
    import tensorflow as tf

    want = json.loads((out.parent / "expected.json").read_text())
    files = sorted(str(p) for p in out.glob("*/*.tfrecord"))
    spec_doc = json.loads(next(out.glob("*/features.json")).read_text())
    spec = {
        k: tf.io.FixedLenFeature(v["shape"], tf.dtypes.as_dtype(v["dtype"]))
        for k, v in spec_doc["features"].items()
    }
    layers = spec_doc["layers"]

    def parse(record):  # type: ignore[no-untyped-def]
        ex = tf.io.parse_single_example(record, spec)
        arrays = {
            name: tf.reshape(
                tf.io.decode_raw(ex[f"{name}/data"], tf.dtypes.as_dtype(info["dtype"])),
                ex[f"{name}/shape"],
            )
            for name, info in layers.items()
        }
        return ex["tile_id"], arrays

    ds = tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    seen = 0
    for tile_id, arrays in ds.as_numpy_iterator():
        for name, arr in arrays.items():
            digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
            key = f"{tile_id.decode()}/{name}"
            assert digest == want[key], f"{key}: tf.data read other values"
            seen += 1
    assert seen == len(want), f"{seen} arrays read, {len(want)} expected"
    times = []
    for _ in range(repeat + 1):
        t = time.perf_counter()
        n = sum(1 for _ in ds.as_numpy_iterator())
        times.append(time.perf_counter() - t)
    wall = statistics.median(times[1:])
    size = sum(Path(f).stat().st_size for f in files)
    print(f"tf {tf.__version__}: {seen} arrays of {n} samples equal to read_tile's")
    print(f"| tfrecord via tf.data | {n} samples | {n / wall:.1f} samples/s | "
          f"{size / wall / 2**20:.0f} MiB/s |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tf-python", help="a Python that has tensorflow (not m3leo's .venv)")
    ap.add_argument("--tiles", type=int, default=48)
    ap.add_argument("--chip", type=int, default=448)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/m3leo-bench-tf"))
    ap.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # the TensorFlow side
    args = ap.parse_args()
    if args.read:
        read_with_tf(args.read, args.repeat)
        return
    if not args.tf_python:
        ap.error("give --tf-python: the Python of an environment with tensorflow installed")
    out = prepare(args)
    cmd = [args.tf_python, __file__, "--read", str(out), "--repeat", str(args.repeat)]
    sys.exit(subprocess.run(cmd, check=False).returncode)


if __name__ == "__main__":
    main()
