"""Full-edition unpack: throughput, peak memory and bytes fetched for one tile.

    .venv/bin/python benchmarks/bench_unpack.py [--sizes 100,500,1500] [--workdir DIR]

1. Shards of ~100 MB to ~1.5 GB are written with incompressible random content (4 MiB rows,
   128 MiB row groups, zstd: Spark's default block size), then unpacked in a fresh subprocess
   each (so peak RSS is the child's own) by:
     - m3leo (``unpack.unpack_shard``: row group by row group, a few rows at a time),
     - a pyarrow-naive baseline (``pq.read_table`` the whole shard, then write each row),
     - raw disk writes of the same files from one in-memory buffer (the ceiling),
   all three writing ``.part`` + fsync + rename per file.
2. Bytes fetched for a one-tile selection, against the shard size: on the largest random shard
   through a counting range reader, and over HTTP from ``m3leo serve`` on a synthetic full
   edition (``download --edition full --tiles ID``).
Everything is written under a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROW = 4 * 1024 * 1024
ROWS_PER_GROUP = 32
REGION = "europe"
DK = "s1grd-2020"


def _rows_path(i: int) -> str:
    from m3leo_cli import spec

    return f"{REGION}/{spec.get_region(REGION).partition}/{DK}/{i:013x}.tif"


def make_shard(path: Path, megabytes: int) -> int:
    """A zstd shard of ~``megabytes`` MB of random 4 MiB rows; returns the row count."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = max(1, megabytes * 1_000_000 // ROW)
    schema = pa.schema([("path", pa.string()), ("ds", pa.string()), ("content", pa.binary()),
                        ("length", pa.int64())])  # fmt: skip
    opts = {"compression": "zstd", "compression_level": 1, "use_dictionary": ["path", "ds"]}
    with pq.ParquetWriter(path, schema, write_page_checksum=True, **opts) as w:
        for start in range(0, n, ROWS_PER_GROUP):
            k = min(ROWS_PER_GROUP, n - start)
            contents = [rng.bytes(ROW) for _ in range(k)]
            w.write_table(pa.table({
                "path": [_rows_path(start + i) for i in range(k)],
                "ds": [DK] * k,
                "content": pa.array(contents, pa.binary()),
                "length": [ROW] * k,
            }, schema=schema))  # fmt: skip
    return n


# --------------------------------------------------------------------------- child processes


def _write(dest: Path, data: object) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with open(part, "wb") as fh:
        fh.write(data)  # type: ignore[arg-type]
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, dest)


def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's peak across exec)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def child(mode: str, shard: Path, out: Path) -> dict[str, float]:
    import hashlib  # noqa: F401 - imports before the clock starts

    import pyarrow.parquet as pq  # noqa: F401

    from m3leo_cli.full.unpack import unpack_shard

    files = nbytes = 0
    t0 = time.perf_counter()
    if mode == "m3leo":
        rep = unpack_shard(shard, out)
        files, nbytes = len(rep.written), rep.bytes
    elif mode == "naive":
        import hashlib

        import pyarrow.parquet as pq

        table = pq.read_table(shard)
        for p, c in zip(table["path"].to_pylist(), table["content"].to_pylist(), strict=True):
            dest = out / p.split("/", 1)[1]
            _write(dest, c)
            hashlib.sha256(c).hexdigest()  # same work as m3leo, which records every sha256
            files += 1
            nbytes += len(c)
    elif mode == "raw":
        import hashlib

        import pyarrow.parquet as pq

        n = pq.read_metadata(shard).num_rows
        buf = os.urandom(ROW)
        t0 = time.perf_counter()
        for i in range(n):
            _write(out / f"{i:013x}.tif", buf)
            hashlib.sha256(buf).hexdigest()
            files += 1
            nbytes += len(buf)
    secs = time.perf_counter() - t0
    rss = _peak_rss_mb()
    return {"seconds": secs, "files": files, "bytes": nbytes, "rss_mb": rss}


def run_child(mode: str, shard: Path, out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["sync"], check=False)
    cmd = [sys.executable, __file__, "--child", mode, str(shard), str(out)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- bytes for one tile


def one_tile_local(shard: Path) -> dict[str, int]:
    """Plan + fetch one tile of a local shard through a counting range reader."""
    from m3leo_cli.full.plan import ShardTask, choose

    data_len = shard.stat().st_size
    fetched = [0, 0]
    with open(shard, "rb") as fh:

        def read(start: int, end: int) -> bytes:
            fh.seek(start)
            fetched[0] += end - start + 1
            fetched[1] += 1
            return fh.read(end - start + 1)

        part = _rows_path(5).split("/", 1)[1]
        task = ShardTask(REGION, "s.zstd.parquet", DK, data_len, "0" * 64, "0" * 40,
                         {f"{5:013x}": part}, frozenset())  # fmt: skip
        with tempfile.TemporaryDirectory() as idx:
            choose(task, "auto", read, Path(idx))
    return {"shard": data_len, "planning": fetched[0], "requests": fetched[1] + task.requests,
            "rows": task.bytes, "total": fetched[0] + task.bytes}  # fmt: skip


def one_tile_http(work: Path) -> dict[str, int]:
    """``download --edition full --tiles ID`` against m3leo serve on a synthetic full edition."""
    from m3leo_cli.config import load_settings
    from m3leo_cli.mirror.download import download
    from m3leo_cli.selection import build_selection
    from m3leo_cli.server import HubServer
    from m3leo_cli.testing.synth import SynthConfig, write_source

    cfg = SynthConfig(regions=(REGION,), editions=("full",), tiles=24, datakinds=(DK,),
                      chip_px=448, tiles_per_shard=16, rows_per_row_group=2)  # fmt: skip
    info = write_source(work / "src", cfg)
    shard = max(info.repo("full", REGION).shards.values(), key=lambda s: s.size)
    with HubServer(work / "src") as srv:
        s = load_settings({"data_dir": work / "data", "endpoint": srv.url})
        sel = build_selection(edition="full", regions=[REGION], tiles=shard.tile_ids[7])
        download(s, sel, workers=2)
        sent = sum(r.bytes_sent for r in srv.log if r.repo_path == shard.path)
        reqs = sum(1 for r in srv.log if r.repo_path == shard.path)
    return {"shard": shard.size, "fetched": sent, "requests": reqs,
            "row_groups": len(shard.row_groups)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,500,1500", help="shard sizes in MB")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", nargs=3, metavar=("MODE", "SHARD", "OUT"))
    args = ap.parse_args()
    if args.child:
        mode, shard, out = args.child
        print(json.dumps(child(mode, Path(shard), Path(out))))
        return
    work = Path(tempfile.mkdtemp(prefix="m3leo-bench-unpack-", dir=args.workdir))
    try:
        print("| shard | rows | m3leo MB/s | RSS MB | naive MB/s | RSS MB | raw write MB/s |")
        print("|---|---|---|---|---|---|---|")
        last = None
        for mb in (int(x) for x in args.sizes.split(",")):
            shard = work / f"shard_{mb}.zstd.parquet"
            n = make_shard(shard, mb)
            res = {m: run_child(m, shard, work / "out") for m in ("m3leo", "naive", "raw")}
            rate = {m: r["bytes"] / r["seconds"] / 1e6 for m, r in res.items()}
            print(f"| {shard.stat().st_size / 1e6:,.0f} MB | {n} | {rate['m3leo']:.0f} | "
                  f"{res['m3leo']['rss_mb']:.0f} | {rate['naive']:.0f} | "
                  f"{res['naive']['rss_mb']:.0f} | {rate['raw']:.0f} |", flush=True)  # fmt: skip
            if last is not None:
                last.unlink()
            last = shard
        if last is not None:
            t = one_tile_local(last)
            print(f"\none tile of the {t['shard'] / 1e6:,.0f} MB shard: {t['total'] / 1e6:.1f} MB "
                  f"fetched ({100 * t['total'] / t['shard']:.1f} %), {t['requests']} requests "
                  f"(footer + path chunks {t['planning'] / 1e3:.1f} kB)")  # fmt: skip
            last.unlink()
        h = one_tile_http(work)
        print(f"one tile over HTTP (m3leo serve, synthetic 448 px shard of {h['row_groups']} row "
              f"groups): {h['fetched'] / 1e3:,.0f} kB of {h['shard'] / 1e3:,.0f} kB "
              f"({100 * h['fetched'] / h['shard']:.1f} %), {h['requests']} requests")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
