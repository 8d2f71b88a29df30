"""Catalog at full scale: a 17.4 M-row manifest, a filtered query and stats, vs pandas on CSV.

    .venv/bin/python benchmarks/bench_manifest.py [--out DIR] [--rebuild] [--runs 3]

Builds (once; reused unless --rebuild) the full-edition manifests of the six regions with the
real row counts (HF Data Studio: ~17.4 M tile files) through m3leo's own writer, then times, each
in a fresh subprocess (wall time including interpreter start and imports, plus peak RSS from
ru_maxrss):

- query:      select(full, region=europe, modality=gssic, split=train)
- query-all:  the same modality + split over all six regions
- stats:      catalog.stats for europe, and for all six regions (17.4 M rows)
- baselines:  pandas.read_csv of a flat CSV listing of europe (the same rows) + the same filter,
              and pandas reading the published ``_parquet.csv`` + split filter + building paths.

pandas is only needed for the baselines (skipped with a message when it is missing); it is not
an m3leo dependency. Tile rows carry a size and a random sha256 each (the worst case for size:
random digests do not compress).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

# HF Data Studio row counts of the full repos (docs/format.md §1), i.e. tile files per region
ROWS = {
    "pakin": 2_550_000,
    "middleeast": 2_900_000,
    "europe": 2_810_000,
    "conus": 2_890_000,
    "china": 4_850_000,
    "southamerica": 1_400_000,
}
TILES_PER_SHARD = 600
QUERY = {"regions": ["europe"], "modalities": ["gssic"], "splits": ["train"]}


# ------------------------------------------------------------------------------ build


def _hex_ids(rng, n: int):
    import numpy as np
    import pyarrow as pa

    values = np.unique(rng.integers(0, 10**15, size=n + n // 100 + 10, dtype=np.uint64))
    values = rng.permutation(values)[:n]
    shifts = np.arange(12, -1, -1, dtype=np.uint64) * np.uint64(4)
    digits = ((values[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.uint8)
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[digits]
    offsets = pa.array(np.arange(0, 13 * (n + 1), 13, dtype=np.int32))
    return pa.StringArray.from_buffers(n, offsets.buffers()[1], pa.py_buffer(chars.tobytes()))


def build_region(region: str, rows: int, seed: int):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from m3leo_cli import spec
    from m3leo_cli.catalog.manifest import SCHEMA

    rng = np.random.default_rng(seed)
    reg = spec.REGIONS[region]
    kinds = spec.expected_datakinds("full", region)
    n = rows // len(kinds)
    ids = _hex_ids(rng, n)
    split_codes = rng.choice(3, size=n, p=[0.6, 0.2, 0.2])
    splits = pa.DictionaryArray.from_arrays(split_codes.astype(np.int8), ["train", "val", "test"])
    splits = splits.cast(pa.string())
    # parquet identifiers: per split, chunks of TILES_PER_SHARD tiles (format §4.2 scheme)
    pid_idx = np.empty(n, dtype=np.int64)
    labels: list[str] = []
    for code, (name, base) in enumerate([("train", 10), ("val", 20), ("test", 30)]):
        idx = np.flatnonzero(split_codes == code)
        k = np.arange(len(idx)) // TILES_PER_SHARD
        pid_idx[idx] = len(labels) + k
        labels += [f"{name}_{base * 10**9 + j:012x}" for j in range(int(k.max()) + 1)]
    pids = pc.take(pa.array(labels, pa.string()), pa.array(pid_idx))
    commit = f"{seed:040x}"
    tables = []
    for dk in kinds:
        d = spec.parse_datakind(dk)
        folder = f"{reg.partition}/{dk}/"
        size = rng.integers(10_000, 8_000_000, size=n, dtype=np.int64)
        digest = rng.integers(0, 256, size=32 * n, dtype=np.uint8).tobytes()
        checksum = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(32), n, [None, pa.py_buffer(digest)]
        ).cast(pa.binary())
        cols = {
            "edition": pa.repeat(pa.scalar("full"), n),
            "region": pa.repeat(pa.scalar(region), n),
            "kind": pa.repeat(pa.scalar("tile"), n),
            "datakind": pa.repeat(pa.scalar(dk), n),
            "family": pa.repeat(pa.scalar(d.family.name), n),
            "year": pa.repeat(pa.scalar(d.year, pa.int16()), n),
            "tile_id": ids,
            "split": splits,
            "path": pc.binary_join_element_wise(folder, ids, "." + d.ext, ""),
            "size": pa.array(size),
            "checksum_kind": pa.repeat(pa.scalar("sha256"), n),
            "checksum": checksum,
            "shard": pc.binary_join_element_wise(folder, pids, ".zstd.parquet", ""),
        }
        tables.append(_complete(cols, n, commit))
        shards = pc.unique(cols["shard"])
        m = len(shards)
        shard_split = pc.utf8_slice_codeunits(
            pc.utf8_slice_codeunits(shards, len(folder)), 0, 5
        ).to_pylist()
        shard_cols = {
            "edition": pa.repeat(pa.scalar("full"), m),
            "region": pa.repeat(pa.scalar(region), m),
            "kind": pa.repeat(pa.scalar("shard"), m),
            "datakind": pa.repeat(pa.scalar(dk), m),
            "family": pa.repeat(pa.scalar(d.family.name), m),
            "year": pa.repeat(pa.scalar(d.year, pa.int16()), m),
            "split": pa.array([s.rstrip("_") for s in shard_split]),
            "path": shards,
            "size": pa.array(rng.integers(10**8, 2 * 10**9, size=m, dtype=np.int64)),
            "checksum_kind": pa.repeat(pa.scalar("sha256"), m),
            "checksum": pa.array([rng.bytes(32) for _ in range(m)], pa.binary()),
        }
        tables.append(_complete(shard_cols, m, commit))
    table = pa.concat_tables(tables)
    assert table.schema.equals(SCHEMA)
    csv = pa.table({"identifier": ids, "split": splits, "parquet_identifier": pids})
    return table, csv, commit


def _complete(cols: dict, n: int, commit: str):
    import pyarrow as pa

    from m3leo_cli.catalog.manifest import SCHEMA

    out = {}
    for f in SCHEMA:
        if f.name == "commit":
            out[f.name] = pa.repeat(pa.scalar(commit), n)
        elif f.name in cols:
            out[f.name] = cols[f.name]
        else:
            out[f.name] = pa.nulls(n, f.type)
    return pa.table(out, schema=SCHEMA)


def build(out: Path) -> dict:
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from m3leo_cli.catalog.manifest import write_manifest
    from m3leo_cli.catalog.refresh import summarize
    from m3leo_cli.store.layout import Store

    store = Store(out / "data")
    info = {}
    for i, (region, rows) in enumerate(ROWS.items()):
        t0 = time.perf_counter()
        table, csv, commit = build_region(region, rows, seed=i + 1)
        t1 = time.perf_counter()
        summary = summarize(table, "full", region, commit, "main")
        path = store.manifest_path("full", region)
        write_manifest(path, table, summary)
        t2 = time.perf_counter()
        info[region] = {
            "rows": table.num_rows,
            "build_s": round(t1 - t0, 2),
            "write_s": round(t2 - t1, 2),
            "file_mb": round(path.stat().st_size / 1e6, 1),
        }
        if region == QUERY["regions"][0]:  # the baselines' inputs
            tiles = table.filter(pc.field("kind") == "tile")
            flat = tiles.select(["region", "datakind", "tile_id", "split", "path", "size"])
            flat = flat.append_column("sha256", _hexes(tiles["checksum"]))
            pacsv.write_csv(flat, out / f"{region}_listing.csv")
            pacsv.write_csv(csv, out / f"{region}_parquet.csv")
        print(f"built {region}: {info[region]}", file=sys.stderr, flush=True)
        del table, csv
    (out / "built.json").write_text(json.dumps(info, indent=2))
    return info


def _hexes(col):
    import numpy as np
    import pyarrow as pa

    arr = col.combine_chunks().cast(pa.binary(32))
    raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[32 * arr.offset :][: 32 * len(arr)]
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.empty(raw.size * 2, dtype=np.uint8)
    hexed[0::2] = chars[raw >> 4]
    hexed[1::2] = chars[raw & 15]
    offsets = np.arange(0, 64 * (len(arr) + 1), 64, dtype=np.int32)
    return pa.StringArray.from_buffers(len(arr), pa.py_buffer(offsets), pa.py_buffer(hexed))


# ------------------------------------------------------------------------------ measure


def child(mode: str, out: Path) -> None:
    """One measurement, in its own process; prints a JSON line."""
    import resource

    t0 = time.perf_counter()
    result: dict = {"mode": mode}
    if mode == "refresh-build":
        result.update(refresh_build(out))
        result["import_s"] = 0.0
    elif mode.startswith("baseline"):
        import pandas as pd

        t0 = _imported(result, t0)

        if mode == "baseline-listing":
            df = pd.read_csv(out / "europe_listing.csv")
            sel = df[(df["region"] == "europe") & (df["datakind"] == "gssic")
                     & (df["split"] == "train")]  # fmt: skip
            result["rows"] = len(sel)
        else:
            from m3leo_cli import spec

            df = pd.read_csv(out / "europe_parquet.csv", dtype=str)
            sel = df[df["split"] == "train"]
            folder = f"{spec.REGIONS['europe'].partition}/gssic/"
            paths = folder + sel["identifier"] + ".nc"
            result["rows"] = len(paths)
    else:
        from m3leo_cli.catalog.query import select
        from m3leo_cli.catalog.stats import stats
        from m3leo_cli.config import load_settings
        from m3leo_cli.selection import build_selection

        t0 = _imported(result, t0)
        settings = load_settings({"data_dir": str(out / "data"), "config_path": str(out / "x")})
        if mode == "query":
            t = select(settings, build_selection(edition="full", **QUERY))
            result["rows"] = t.num_rows
        elif mode == "query-all":
            q = {k: v for k, v in QUERY.items() if k != "regions"}
            t = select(settings, build_selection(edition="full", **q))
            result["rows"] = t.num_rows
        elif mode in ("stats", "stats-local"):
            rows = stats(settings, build_selection(edition="full", regions=["europe"]))
            result["rows"] = len(rows)
            result["local_tiles"] = sum(r["local_tiles"] for r in rows)
        elif mode == "stats-all":
            rows = stats(settings, build_selection(edition="full"))
            result["rows"] = len(rows)
            result["tiles"] = sum(r["tiles"] for r in rows)
    result["op_s"] = time.perf_counter() - t0
    result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def refresh_inputs(region: str, seed: int = 7):
    """A real-sized full-edition listing (shards) and ``_parquet.csv`` for ``region``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from m3leo_cli import spec
    from m3leo_cli.hub.client import TreeEntry

    reg = spec.REGIONS[region]
    rng = np.random.default_rng(seed)
    n = reg.total_chips
    ids = _hex_ids(rng, n)
    codes = rng.choice(3, size=n, p=[0.6, 0.2, 0.2])
    pid_idx = np.empty(n, dtype=np.int64)
    labels: list[str] = []
    for code, (name, base) in enumerate([("train", 10), ("val", 20), ("test", 30)]):
        idx = np.flatnonzero(codes == code)
        k = np.arange(len(idx)) // TILES_PER_SHARD
        pid_idx[idx] = len(labels) + k
        labels += [f"{name}_{base * 10**9 + j:012x}" for j in range(int(k.max()) + 1)]
    splits = pc.take(pa.array(["train", "val", "test"]), pa.array(codes))
    pids = pc.take(pa.array(labels), pa.array(pid_idx))
    sink = pa.BufferOutputStream()
    pacsv.write_csv(
        pa.table({"identifier": ids, "split": splits, "parquet_identifier": pids}), sink
    )
    csv = sink.getvalue().to_pybytes().replace(b'"', b"")
    entries = [TreeEntry(reg.parquet_csv(), "file", len(csv), "1" * 40, None)]
    for dk in spec.expected_datakinds("full", region):
        for label in labels:
            entries.append(
                TreeEntry(f"{reg.partition}/{dk}/{label}.zstd.parquet", "file",
                          int(rng.integers(10**8, 2 * 10**9)), "2" * 40, rng.bytes(32).hex())
            )  # fmt: skip
    return entries, csv


def refresh_build(out: Path, region: str = "europe") -> dict:
    """What ``catalog refresh`` does after the listing arrived: build, summarize, write."""
    from m3leo_cli.catalog.build import build_manifest
    from m3leo_cli.catalog.manifest import write_manifest
    from m3leo_cli.catalog.refresh import summarize

    entries, csv = refresh_inputs(region)
    t0 = time.perf_counter()
    built = build_manifest("full", region, "c" * 40, entries, {"parquet": csv})
    t1 = time.perf_counter()
    summary = summarize(built.table, "full", region, "c" * 40, "main")
    t2 = time.perf_counter()
    write_manifest(out / "refresh-test.parquet", built.table, summary, presorted=True)
    t3 = time.perf_counter()
    return {"rows": built.table.num_rows, "shards": len(entries) - 1, "build_s": t1 - t0,
            "summarize_s": t2 - t1, "write_s": t3 - t2}  # fmt: skip


def _imported(result: dict, t0: float) -> float:
    now = time.perf_counter()
    result["import_s"] = now - t0
    return now


def prepare_local(out: Path, n: int = 1000) -> None:
    """Put n europe gssic tiles 'in the store' (empty files) so stats scans a local folder."""
    import pyarrow.compute as pc

    from m3leo_cli.catalog.manifest import read_manifest
    from m3leo_cli.store.layout import Store

    store = Store(out / "data")
    path = store.manifest_path("full", "europe")
    expr = (pc.field("kind") == "tile") & (pc.field("datakind") == "gssic")
    rows = read_manifest([path], filter=expr, columns=["path"]).slice(0, n)
    for p in rows["path"].to_pylist():
        dest = store.local_path("full", "europe", p)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.touch()


def measure(mode: str, out: Path, runs: int) -> dict:
    walls, imps, ops, rss, last = [], [], [], [], {}
    for _ in range(runs):
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--out", str(out)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        walls.append(time.perf_counter() - t0)
        last = json.loads(res.stdout.strip().splitlines()[-1])
        ops.append(last["op_s"])
        imps.append(last["import_s"])
        rss.append(last["rss_mib"])
    extra = {k: round(v, 3) for k, v in last.items() if k.endswith("_s") and k != "op_s"}
    return {
        **extra,
        "mode": mode,
        "rows": last.get("rows"),
        "wall_s": round(statistics.median(walls), 3),
        "import_s": round(statistics.median(imps), 3),
        "op_s": round(statistics.median(ops), 3),
        "peak_rss_mib": round(max(rss), 0),
        "runs": [round(w, 3) for w in walls],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/m3leo-bench-manifest"))
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", default="", help="comma-separated subset of the measurements")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "build":
        build(args.out)
        return
    if args.child == "prepare-local":
        prepare_local(args.out)
        return
    if args.child:
        child(args.child, args.out)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.rebuild or not (args.out / "built.json").exists():
        # in a child, so this process stays small: a child's ru_maxrss starts from its parent's
        subprocess.run([sys.executable, __file__, "--child", "build", "--out", str(args.out)],
                       check=True)  # fmt: skip
    built = json.loads((args.out / "built.json").read_text())
    print(f"manifest: {sum(v['rows'] for v in built.values()):,} rows in 6 files, "
          f"{sum(v['file_mb'] for v in built.values()):.0f} MB", flush=True)  # fmt: skip
    modes = ["query", "query-all", "stats", "stats-all", "refresh-build"]
    store_dir = args.out / "data" / "full"
    if store_dir.exists():  # stats without local files first
        import shutil

        shutil.rmtree(store_dir)
    only = set(filter(None, args.modes.split(",")))
    results = [measure(m, args.out, args.runs) for m in modes if not only or m in only]
    subprocess.run(
        [sys.executable, __file__, "--child", "prepare-local", "--out", str(args.out)], check=True
    )
    modes = ["stats-local"]
    import importlib.util

    if importlib.util.find_spec("pandas") is not None:  # not imported here: children's RSS
        modes += ["baseline-listing", "baseline-parquet-csv"]
    else:
        print("pandas is not installed: skipping the pandas baselines", file=sys.stderr)
    results += [measure(m, args.out, args.runs) for m in modes if not only or m in only]
    for r in results:
        print(json.dumps(r), flush=True)
    (args.out / "results.json").write_text(
        json.dumps({"built": built, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
