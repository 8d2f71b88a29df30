"""Benchmark: streaming samples from the Hub (``M3LEOStream``) against the store loader (issue 26).

A synthetic full edition (europe; s1grd-2020 and esaworldcover-2020 at 448 px, shards of
``--tiles-per-shard`` tiles in row groups of ``--rows-per-group`` rows, as Spark packs them per
split) is served by nginx the way the Hub serves it (benchmarks/nginx_hub.py: recorded API
answers, a 302 per resolve to a second port that serves the shards with ``Range`` and
``sendfile``; ``+20 ms`` adds that much to every request through the echo module). The access
log is extended with each answer's status, ``$body_bytes_sent`` and ``Range`` header.

The experiment is the esawc/s1grd baseline's: the 8 S1 GRD bands (VV, VH ascending, four
seasons), the ESA WorldCover target, ``data.size=448``, ``normalize=false`` (no statistics
pass), the train split, batch 8, 2 DataLoader workers. Each measured pass is a fresh Python
process (the numbers are what a user sees), after a ``sync``:

- **stream, first run**: an empty data folder (no manifest, no shard index, empty row-group
  cache): ``M3LEOStream`` + ``StreamLoader``, epoch 1 from the Hub, then epoch 2 in the same
  process from the cache (nginx's log must show no request during it);
- **stream, catalog cached**: the same data folder with its row-group cache emptied (manifest
  and shard index kept, as on any later run): time to the first batch and epoch 1;
- **store**: ``StoreDataset`` + the DataLoader ``m3leo train`` builds for it (shuffle,
  persistent workers), two epochs over the same tiles downloaded beforehand (``m3leo
  download --edition full --region europe -m s1grd -m esaworldcover``), warm page cache.

Measured: time to the first batch from process start (the parent's clock before it spawns the
child) and from the dataset's construction; samples/s of each epoch (``iter()`` to the last
batch, worker start-up included) and samples per CPU-second (the process and its workers:
steadier than wall time on a shared machine); peak memory: the main process's ``VmHWM``, the
largest worker's peak (``ru_maxrss`` of the reaped workers, each having reset the peak it
inherits from the fork) and the largest sum of PSS over the process tree, sampled every 50 ms
by the parent with psutil; bytes fetched (the ``$body_bytes_sent`` of range GETs of
``.parquet`` files in the process's window) per sample, against the sample's own bytes in the
shards: for each of its layers, its row group's ``content`` column chunk's compressed size
times the row's share of the chunk's uncompressed ``length`` (the bytes that cannot be avoided
to get the sample; footers, ``path`` chunks, page headers and other rows' content are
overhead). Peak memory is also measured at ``--scale`` times the tiles, to show it does not
grow with the selection. Last, from the library's own order function, how many row groups
a worker's first batch needs at scale (each is fetched whole before that batch).

    .venv/bin/python benchmarks/bench_stream.py [--tiles 96] [--tiles-per-shard 64]
        [--rows-per-group 16] [--delays 0,20] [--repeat 3] [--scale 2] [--shuffle-buffer N]

Needs Debian's ``nginx`` and ``libnginx-mod-http-echo``. Outputs under benchmarks/out/stream.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nginx_hub  # noqa: E402

REPO = "M3LEO/europe"
DATAKINDS = ("s1grd-2020", "esaworldcover-2020")
S1 = [f"{s}_{p}asc" for p in ("vv", "vh") for s in ("winter", "spring", "summer", "fall")]
CLASSES = [10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100]
OUT = Path(__file__).resolve().parent / "out" / "stream"
LOG_FORMAT = "log_format t '$msec $request_uri';"
LOG_FORMAT_BYTES = (
    "log_format t '$msec $request_uri $status $body_bytes_sent $request_method \"$http_range\"';"
)
TARGETS = {"rate": 0.8, "bytes": 1.5, "ttfb": 2.0, "epoch2": 0.95}


# ----------------------------------------------------------------------------- the measured pass
def child(args: argparse.Namespace) -> None:
    """One loader pass in this (fresh) process; prints a JSON line of timings and memory."""
    import resource

    import torch

    from m3leo_cli.train.dataset import StoreDataset
    from m3leo_cli.train.layers import data_spec
    from m3leo_cli.train.streamed import M3LEOStream, StreamLoader
    from m3leo_cli.train.threads import collate

    t_imported = time.time()
    spec = data_spec({
        "edition": "full", "regions": ["europe"], "size": 448, "normalize": False,
        "inputs": [{"modality": "s1grd-2020", "bands": S1}],
        "target": {"modality": "esaworldcover-2020", "band": "Map", "classes": CLASSES},
    })  # fmt: skip
    out: dict = {"imported": t_imported}
    t0 = time.time()
    loader: Any
    if args.child == "stream":
        extra = {} if args.shuffle_buffer is None else {"shuffle_buffer": args.shuffle_buffer}
        stream = M3LEOStream(spec, "train", seed=0, **extra)
        out["constructed"] = time.time()
        out["plan"] = {
            "groups": len(stream.stream_plan.groups),
            "group_bytes": stream.stream_plan.total_bytes,
            "index_requests": stream.stream_plan.index_requests,
            "index_bytes": stream.stream_plan.index_bytes,
        }
        loader = StreamLoader(stream, batch_size=args.batch, num_workers=args.workers,
                              collate_fn=collate, worker_init_fn=reset_peak)  # fmt: skip
    else:  # what M3leoDataModule builds for the store's train split
        ds: Any = StoreDataset(spec, "train")  # map-style, not a torch Dataset subclass
        out["constructed"] = time.time()
        loader = torch.utils.data.DataLoader(
            ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
            generator=torch.Generator().manual_seed(0), persistent_workers=args.workers > 0,
            collate_fn=collate, worker_init_fn=reset_peak,
        )  # fmt: skip
    out["construct_start"] = t0
    out["epochs"] = []
    for _ in range(args.epochs):
        cpu0 = cpu_seconds(loader)
        start, first, n, tiles = time.time(), None, 0, []
        for batch in loader:
            if first is None:
                first = time.time()
            n += len(batch["tile_id"])
            tiles.extend(batch["tile_id"])
        end = time.time()
        out["epochs"].append({"start": start, "first": first, "end": end, "samples": n,
                              "distinct": len(set(tiles)),
                              "cpu": cpu_seconds(loader) - cpu0})  # fmt: skip
    out["tiles"] = sorted(set(tiles))
    out["rss_main_mb"] = vm_hwm()
    del loader  # persistent workers end (and are waited for) here
    import gc

    gc.collect()
    out["rss_worker_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("BENCH " + json.dumps(out), flush=True)


def vm_hwm() -> float:
    """This process's peak RSS in MB. Not ``ru_maxrss``: Linux carries the parent's peak
    across fork + exec into it (500 MB here, the benchmark's own)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(_: int) -> None:
    """worker_init_fn: a forked worker starts with its parent's peak RSS as its own; reset it
    to what it holds now (``clear_refs`` 5), so RUSAGE_CHILDREN gives the workers' own peak."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def cpu_seconds(loader: object) -> float:
    """CPU seconds so far of this process, its reaped children (workers of finished epochs)
    and its live DataLoader workers (persistent ones)."""
    import resource

    import psutil

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    it = getattr(loader, "_iterator", None)
    for w in getattr(it, "_workers", None) or []:
        try:
            t = psutil.Process(w.pid).cpu_times()
            total += t.user + t.system
        except (psutil.Error, AttributeError, ValueError):
            pass
    return total


def run_child(mode: str, env: dict[str, str], args: argparse.Namespace, epochs: int) -> dict:
    """Spawn one measured pass; sample its process tree's RSS meanwhile; return its JSON."""
    import psutil

    cmd = [sys.executable, __file__, "--child", mode, "--batch", str(args.batch),
           "--workers", str(args.workers), "--epochs", str(epochs)]  # fmt: skip
    if args.shuffle_buffer is not None:
        cmd += ["--shuffle-buffer", str(args.shuffle_buffer)]
    os.sync()  # the previous pass's dirty pages are not this one's to write back
    spawn = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0]

    def sample() -> None:
        try:
            p = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    total = p.memory_full_info().pss
                    for c in p.children(recursive=True):
                        try:
                            total += c.memory_full_info().pss
                        except psutil.Error:
                            pass
                except psutil.Error:
                    break
                peak[0] = max(peak[0], total)
                time.sleep(0.05)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done = time.time()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{mode} pass failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    line = next(ln for ln in stdout.decode().splitlines() if ln.startswith("BENCH "))
    res = json.loads(line[len("BENCH ") :])
    res.update(spawn=spawn, done=done, pss_tree_mb=peak[0] / 2**20)
    return res


# ----------------------------------------------------------------------------- the source
def source(tiles: int, per_shard: int, per_group: int) -> Path:
    from m3leo_cli.testing.synth import SynthConfig, write_source

    root = OUT / f"src-{tiles}-{per_shard}-{per_group}"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        cfg = SynthConfig(regions=("europe",), editions=("full",), tiles=tiles, chip_px=448,
                          datakinds=DATAKINDS, tiles_per_shard=per_shard,
                          rows_per_row_group=per_group)  # fmt: skip
        write_source(root, cfg)
        (root / ".complete").write_text("")
    return root


def shard_facts(root: Path) -> dict:
    """Per row group of every shard: its rows' tiles, splits, own bytes (see the docstring)."""
    import pyarrow.parquet as pq

    repo = root / REPO
    split_csv = next(p for p in repo.glob("*.csv") if not p.name.endswith("_parquet.csv"))
    with split_csv.open() as f:
        split_of = {r["identifier"]: r["split"] for r in csv.DictReader(f)}
    groups = []
    own: dict[str, float] = {}  # tile id -> its own bytes, over its layers
    for shard in sorted(repo.rglob("*.parquet")):
        pf = pq.ParquetFile(shard)
        names = [pf.schema_arrow.names[i] for i in range(len(pf.schema_arrow.names))]
        content = names.index("content")
        for rg in range(pf.metadata.num_row_groups):
            rows = pf.read_row_group(rg, columns=["path", "length"]).to_pylist()
            chunk = pf.metadata.row_group(rg).column(content).total_compressed_size
            total = sum(r["length"] for r in rows)
            tiles = [Path(r["path"]).stem for r in rows]
            for r, t in zip(rows, tiles, strict=True):
                own[t] = own.get(t, 0) + chunk * r["length"] / total
            splits = [split_of[t] for t in tiles]
            groups.append({"shard": shard.relative_to(repo).as_posix(), "rg": rg,
                           "rows": len(rows), "splits": splits, "content": chunk})  # fmt: skip
    return {"groups": groups, "own": own, "split_of": split_of}


# ----------------------------------------------------------------------------- nginx
def site(name: str, root: Path, answers: dict, delay_ms: float) -> tuple[Path, Path, str]:
    work = OUT / name
    shutil.rmtree(work, ignore_errors=True)
    conf, hub_port, _ = nginx_hub.write_site(work, root, answers, delay_ms)
    text = conf.read_text()
    if LOG_FORMAT not in text:
        sys.exit("nginx_hub's log format changed: update LOG_FORMAT in bench_stream.py")
    conf.write_text(text.replace(LOG_FORMAT, LOG_FORMAT_BYTES))
    return work, conf, f"http://127.0.0.1:{hub_port}"


def log_entries(log: Path, since: float, until: float) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        parts = line.split(" ", 5)
        t = float(parts[0])
        if since <= t <= until:
            out.append({"t": t, "uri": parts[1], "status": int(parts[2]), "bytes": int(parts[3]),
                        "method": parts[4], "range": parts[5].strip('"')})  # fmt: skip
    return out


def shard_bytes(entries: list[dict]) -> tuple[int, int]:
    """(bytes, requests) of range GETs of .parquet files answered with their bytes."""
    hits = [e for e in entries if e["method"] == "GET" and e["uri"].endswith(".parquet")
            and e["range"] not in ("", "-") and e["status"] in (200, 206)]  # fmt: skip
    return sum(e["bytes"] for e in hits), len(hits)


def env_for(work: Path, endpoint: str, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("M3LEO_", "HF_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(work / "hf-home"), M3LEO_CONFIG=os.devnull,
               M3LEO_DATA_DIR=str(data), HF_HUB_DISABLE_TELEMETRY="1", NO_COLOR="1")  # fmt: skip
    return env


def store(root: Path, answers: dict) -> Path:
    """The same tiles downloaded once into a store (from an nginx site of their own)."""
    data = OUT / f"store-{root.name}"
    if (data / ".complete").exists():
        return data
    shutil.rmtree(data, ignore_errors=True)
    work, conf, endpoint = site("site-store", root, answers, 0)
    m3leo = str(Path(sys.executable).parent / "m3leo")
    with nginx_hub.Nginx(conf):
        subprocess.run([m3leo, "download", "--edition", "full", "--region", "europe",
                        "-m", "s1grd", "-m", "esaworldcover", "-q"],
                       env=env_for(work, endpoint, data), check=True)  # fmt: skip
    (data / ".complete").write_text("")
    return data


# ----------------------------------------------------------------------------- one delay
def measure(root: Path, answers: dict, facts: dict, delay: float, args: argparse.Namespace,
            store_dir: Path, repeat: int, catalog_cached: bool = True) -> dict:  # fmt: skip
    work, conf, endpoint = site(f"site-{root.name}-{delay:g}ms", root, answers, delay)
    log = work / "access.log"
    rows: dict[str, list[dict]] = {"store": [], "stream": [], "stream-cached": []}
    with nginx_hub.Nginx(conf):
        for i in range(repeat):
            data = work / "stream-data"
            shutil.rmtree(data, ignore_errors=True)
            env = env_for(work, endpoint, data)
            order = ("store", "stream") if i % 2 == 0 else ("stream", "store")
            for mode in order:
                if mode == "store":
                    r = run_child("store", env_for(work, endpoint, store_dir), args, 2)
                    entries = log_entries(log, r["spawn"], r["done"])
                    if entries:
                        sys.exit(f"the store pass asked the Hub {len(entries)} times")
                    rows["store"].append(summarise(r, facts))
                    continue
                r = run_child("stream", env, args, 2)
                e1, e2 = r["epochs"]
                entries = log_entries(log, r["spawn"], r["done"])
                late = [e for e in entries if e["t"] >= e1["end"]]
                if late:
                    sys.exit(f"epoch 2 asked the Hub {len(late)} times: {late[:3]}")
                row = summarise(r, facts)
                row["fetched"], row["range_requests"] = shard_bytes(entries)
                row["requests"] = len(entries)
                row["epoch2_requests"] = len(late)
                row["construct_requests"] = sum(e["t"] < r["constructed"] for e in entries)
                row["construct_fetched"] = shard_bytes(
                    [e for e in entries if e["t"] < r["constructed"]]
                )[0]
                row["first_fetched"] = shard_bytes(
                    [e for e in entries if r["constructed"] <= e["t"] <= e1["first"]]
                )[0]
                row["epoch_fetched"] = shard_bytes(
                    [e for e in entries if r["constructed"] <= e["t"]]
                )[0]
                rows["stream"].append(row)
            if catalog_cached:  # manifest and shard index kept, row-group cache emptied
                shutil.rmtree(data / ".m3leo" / "stream-cache")
                r = run_child("stream", env, args, 1)
                entries = log_entries(log, r["spawn"], r["done"])
                row = summarise(r, facts)
                row["fetched"], row["range_requests"] = shard_bytes(entries)
                row["requests"] = len(entries)
                rows["stream-cached"].append(row)
            shutil.rmtree(data, ignore_errors=True)
    return rows


def summarise(r: dict, facts: dict) -> dict:
    e1 = r["epochs"][0]
    if any(e["distinct"] != e["samples"] for e in r["epochs"]):
        sys.exit(f"a sample was delivered twice in an epoch: {r['epochs']}")
    return {
        "ttfb_process": e1["first"] - r["spawn"],
        "ttfb_construct": e1["first"] - r["construct_start"],
        "import": r["imported"] - r["spawn"],
        "construct": r["constructed"] - r["construct_start"],
        "samples": e1["samples"],
        "rate": [e["samples"] / (e["end"] - e["start"]) for e in r["epochs"]],
        "cpu_rate": [e["samples"] / e["cpu"] for e in r["epochs"]],
        "rss_main": r["rss_main_mb"],
        "rss_worker": r["rss_worker_mb"],
        "pss_tree": r["pss_tree_mb"],
        "own": sum(facts["own"][t] for t in r["tiles"]),
        "plan": r.get("plan"),
    }


def med(rows: list[dict], key: str, i: int | None = None) -> float:
    vals = [r[key][i] if i is not None else r[key] for r in rows]
    return statistics.median(vals)


def spread(rows: list[dict], key: str, i: int | None = None, fmt: str = ".1f") -> str:
    vals = [r[key][i] if i is not None else r[key] for r in rows]
    return "[" + ", ".join(format(v, fmt) for v in vals) + "]"


def report(delay: float, rows: dict) -> dict:
    st, sm, sc = rows["store"], rows["stream"], rows["stream-cached"]
    out: dict = {"raw": rows, "samples": sm[0]["samples"], "plan": sm[0]["plan"]}
    for name, rs in (("store", st), ("stream", sm)):
        for e in (0, 1):
            out[f"{name}_rate{e + 1}"] = med(rs, "rate", e)
            out[f"{name}_cpu_rate{e + 1}"] = med(rs, "cpu_rate", e)
        out[f"{name}_rss"] = [med(rs, k) for k in ("rss_main", "rss_worker", "pss_tree")]
        out[f"{name}_ttfb"] = med(rs, "ttfb_process")
    out.update(
        ttfb_construct=med(sm, "ttfb_construct"), import_s=med(sm, "import"),
        construct=med(sm, "construct"), ttfb_cached=med(sc, "ttfb_process"),
        ttfb_cached_construct=med(sc, "ttfb_construct"), construct_cached=med(sc, "construct"),
        fetched=med(sm, "fetched"), own=sm[0]["own"], fetched_cached=med(sc, "fetched"),
        requests=med(sm, "requests"), range_requests=med(sm, "range_requests"),
        construct_requests=med(sm, "construct_requests"),
        construct_fetched=med(sm, "construct_fetched"), first_fetched=med(sm, "first_fetched"),
        epoch_fetched=med(sm, "epoch_fetched"),
        stream_cached_rate1=med(sc, "rate", 0),
    )  # fmt: skip
    out["bytes_ratio"] = out["fetched"] / out["own"]
    out["bytes_ratio_cached"] = out["fetched_cached"] / out["own"]
    # each repeat runs the store and the stream back to back: the ratio is taken per pair (they
    # share whatever else loads the machine then), and its median reported
    pairs = {}
    for k, key, e in (("rate1", "rate", 0), ("rate2", "rate", 1), ("cpu_rate1", "cpu_rate", 0),
                      ("cpu_rate2", "cpu_rate", 1)):  # fmt: skip
        pairs[k] = [b[key][e] / a[key][e] for a, b in zip(st, sm, strict=True)]
        out[f"ratio_{k}"] = statistics.median(pairs[k])
    out["ratio_pairs"] = pairs

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    t, n = TARGETS, len(st)
    print(f"\n+{delay:g} ms per request: {out['samples']} train samples a pass, batch 8, "
          f"2 workers; medians of {n} (runs in brackets; ratio: the median of the per-repeat "
          f"ratios)")  # fmt: skip
    print(f"{'':46} {'store':>8} {'stream':>8} {'ratio':>6}  target")

    def line(label: str, key: str, target: str, note: str = "") -> None:
        print(f"{label:46} {out['store_' + key]:8.1f} {out['stream_' + key]:8.1f} "
              f"{out['ratio_' + key]:6.2f}  {target}{note}")  # fmt: skip

    def runs(k: str, key: str, e: int) -> str:
        ratios = "[" + ", ".join(f"{r:.2f}" for r in pairs[k]) + "]"
        return f"  store {spread(st, key, e)} stream {spread(sm, key, e)} ratios {ratios}"

    line("epoch 1 samples/s (wall)", "rate1",
         f">= {t['rate']} ({mark(out['ratio_rate1'] >= t['rate'])})" if delay == 0 else "-",
         runs("rate1", "rate", 0))  # fmt: skip
    line("epoch 1 samples per CPU-second", "cpu_rate1", "-", runs("cpu_rate1", "cpu_rate", 0))
    line("epoch 2 samples/s (wall; stream: its cache)", "rate2",
         f">= {t['epoch2']} ({mark(out['ratio_rate2'] >= t['epoch2'])})",
         runs("rate2", "rate", 1))  # fmt: skip
    line("epoch 2 samples per CPU-second", "cpu_rate2", "-", runs("cpu_rate2", "cpu_rate", 1))
    ok = out["stream_ttfb"] < t["ttfb"]
    print(f"{'first batch, s from process start':46} {out['store_ttfb']:8.2f} "
          f"{out['stream_ttfb']:8.2f} {'':6}  < {t['ttfb']} ({mark(ok)})  "
          f"stream {spread(sm, 'ttfb_process', fmt='.2f')}")  # fmt: skip
    ok = out["ttfb_cached"] < t["ttfb"]
    print(
        f"{'  stream, catalog cached (a later run)':46} {'':8} {out['ttfb_cached']:8.2f} "
        f"{'':6}  < {t['ttfb']} ({mark(ok)})  {spread(sc, 'ttfb_process', fmt='.2f')}"
    )
    print(f"{'  stream: imports / construction / to batch':46} {'':8} "
          f"{out['import_s']:.2f} / {out['construct']:.2f} / "
          f"{out['ttfb_construct'] - out['construct']:.2f} s (catalog cached: construction "
          f"{out['construct_cached']:.2f}, to batch "
          f"{out['ttfb_cached_construct'] - out['construct_cached']:.2f} s)")  # fmt: skip
    ok = out["bytes_ratio"] <= t["bytes"]
    print(
        f"{'bytes fetched per sample, kB (vs own bytes)':46} "
        f"{out['own'] / out['samples'] / 1e3:8.1f} "
        f"{out['fetched'] / out['samples'] / 1e3:8.1f} {out['bytes_ratio']:6.3f}  "
        f"<= {t['bytes']} ({mark(ok)}); catalog cached {out['bytes_ratio_cached']:.3f}"
    )
    p = out["plan"]
    print(f"{'  requests: all / range GETs of shards':46} {'':8} "
          f"{out['requests']:.0f} / {out['range_requests']:.0f} "
          f"({out['construct_requests']:.0f} before the dataset was built); plan: "
          f"{p['groups']} row groups, {p['group_bytes'] / 1e6:.2f} MB of spans, index "
          f"{p['index_requests']} requests, {p['index_bytes'] / 1e3:.0f} kB")  # fmt: skip
    print(f"{'  shard bytes fetched while constructing':46} {'':8} "
          f"{out['construct_fetched'] / 1e6:.2f} MB (the channel probe's row group); after "
          f"it, by the first batch {out['first_fetched'] / 1e6:.2f} MB of the epoch's "
          f"{out['epoch_fetched'] / 1e6:.2f} MB (the prefetcher runs ahead)")  # fmt: skip
    a, b = out["store_rss"], out["stream_rss"]
    print(f"{'peak MB: main RSS / worker RSS / tree PSS':46} store {a[0]:.0f} / {a[1]:.0f} / "
          f"{a[2]:.0f}, stream {b[0]:.0f} / {b[1]:.0f} / {b[2]:.0f}")  # fmt: skip
    return out


def split_mix(facts: dict) -> str:
    train = [g for g in facts["groups"] if "train" in g["splits"]]
    pure = sum(all(s == "train" for s in g["splits"]) for g in train)
    rows = sum(g["rows"] for g in train)
    other = sum(sum(s != "train" for s in g["splits"]) for g in train)
    return (
        f"{len(train)} row groups hold train tiles ({pure} only train; {other} of their "
        f"{rows} rows are of another split)"
    )


def first_batch_model(batch: int, workers: int, buffer: int) -> str:
    """How many row groups (per layer) the first batch of a worker needs at scale, from the
    library's own order (``stream.order.share_order``) over 6,000 samples, 20 seeds: each must
    be fetched whole before that batch."""
    from m3leo_cli.stream.order import share_order

    out = []
    for rows in (10, 16, 30, 60):
        comps = [list(range(s, min(6000, s + rows))) for s in range(0, 6000, rows)]
        need = [len({i // rows for i in share_order(comps, seed=seed, epoch=0, shuffle=True,
                                                     buffer=buffer, workers=workers)[:batch]})
                for seed in range(20)]  # fmt: skip
        out.append(f"{rows} rows/group: {statistics.mean(need):.1f}")
    return ", ".join(out)


def compile_package() -> None:
    """Byte-compile m3leo_cli as ``pip install`` does (each pass starts as installed)."""
    import compileall

    import m3leo_cli

    compileall.compile_dir(Path(m3leo_cli.__file__).parent, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=96)
    ap.add_argument("--tiles-per-shard", type=int, default=64)
    ap.add_argument("--rows-per-group", type=int, default=16)
    ap.add_argument("--delays", default="0,20")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=int, default=2, help="peak RSS also at tiles x this (1: no)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shuffle-buffer", type=int, help="the stream's (default: the library's)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if not shutil.which("nginx") or not Path(nginx_hub.ECHO_MODULE).exists():
        sys.exit("nginx is missing: apt-get install nginx libnginx-mod-http-echo")
    try:
        import psutil  # noqa: F401
    except ImportError:
        sys.exit("psutil is needed to sample the process tree's RSS: pip install psutil")
    compile_package()
    t_start = time.time()
    summary: dict = {"args": vars(args)}
    sizes = [args.tiles] + ([args.tiles * args.scale] if args.scale > 1 else [])
    for size in sizes:
        root = source(size, args.tiles_per_shard, args.rows_per_group)
        facts = shard_facts(root)
        answers = nginx_hub.record(
            root, [REPO], nginx_hub.api_uris([REPO], nginx_hub.commits_of(root, [REPO]))
        )
        store_dir = store(root, answers)
        shards = sorted(root.glob(f"{REPO}/**/*.parquet"))
        mb = sum(p.stat().st_size for p in shards) / 1e6
        print(f"\n== {size} tiles: {len(shards)} shards, {mb:.0f} MB, "
              f"{len(facts['groups'])} row groups of up to {args.rows_per_group} rows; "
              f"{split_mix(facts)}")  # fmt: skip
        delays = [float(x) for x in args.delays.split(",") if x] if size == args.tiles else [0.0]
        for delay in delays:
            rows = measure(root, answers, facts, delay, args, store_dir, args.repeat,
                           catalog_cached=size == args.tiles)  # fmt: skip
            if size == args.tiles:
                summary[f"{delay:g}ms"] = report(delay, rows)
            else:
                st, sm = rows["store"], rows["stream"]
                summary[f"rss-{size}"] = {
                    "stream": [med(sm, k) for k in ("rss_main", "rss_worker", "pss_tree")],
                    "store": [med(st, k) for k in ("rss_main", "rss_worker", "pss_tree")],
                    "stream_rate1": med(sm, "rate", 0), "store_rate1": med(st, "rate", 0),
                    "raw": rows,
                }  # fmt: skip
    if args.scale > 1 and "0ms" in summary:
        big = args.tiles * args.scale
        print(f"\npeak MB (main RSS / largest worker RSS / tree PSS), +0 ms: {args.tiles} "
              f"tiles -> {big} tiles")  # fmt: skip
        for who in ("stream", "store"):
            a, b = summary["0ms"][f"{who}_rss"], summary[f"rss-{big}"][who]
            print(f"  {who:7} {a[0]:.0f} / {a[1]:.0f} / {a[2]:.0f}  ->  "
                  f"{b[0]:.0f} / {b[1]:.0f} / {b[2]:.0f}")  # fmt: skip
    from m3leo_cli.train.streamed import SHUFFLE_BUFFER

    buffer = SHUFFLE_BUFFER if args.shuffle_buffer is None else args.shuffle_buffer
    print(
        f"\nrow groups per layer a worker's first batch needs (order model, 6,000 samples, "
        f"buffer {buffer}): {first_batch_model(args.batch, args.workers, buffer)}"
    )
    if buffer > args.batch:
        print(f"  with a buffer of {args.batch}: "
              f"{first_batch_model(args.batch, args.workers, args.batch)}")  # fmt: skip
    print(f"\ntotal {time.time() - t_start:.0f} s")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "last.json").write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
