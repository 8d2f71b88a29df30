"""Download benchmark: m3leo vs huggingface_hub.snapshot_download (vs aria2c if installed).

One run builds (and caches) a synthetic miniset source of ``--tiles`` s1grd tiles at the real
448 px chip size (~260 kB each) plus one large file, serves it with the project's own loopback
Hub server (``m3leo serve``: 302 to a second content origin, like the Hub), and times each
client in its own process (so peak RSS is per client), with and without added latency.

    .venv/bin/python benchmarks/bench_download.py                 # full run (a few minutes)
    .venv/bin/python benchmarks/bench_download.py --tiles 60 --big-mib 128 --runs 1   # quick

Prints files/s, MB/s (10^6 B/s), the m3leo / snapshot_download ratio and peak RSS per client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from m3leo_cli import spec

REGION = "europe"
DATAKIND = "s1grd-2020"
PARTITION = spec.get_region(REGION).partition
BIG_REPO = "M3LEO-bench/big"
BIG_PATH = "big.tif"


# --------------------------------------------------------------------------- source
def build_source(cache: Path, tiles: int, chip_px: int, big_mib: int) -> Path:
    from m3leo_cli.testing.synth import SynthConfig, write_source

    root = cache / f"src-t{tiles}-px{chip_px}"
    if not (root / "M3LEO-miniset" / REGION).is_dir():
        tmp = cache / "building"
        shutil.rmtree(tmp, ignore_errors=True)
        cfg = SynthConfig(regions=(REGION,), editions=("miniset",), tiles=tiles, chip_px=chip_px,
                          datakinds=(DATAKIND,))  # fmt: skip
        print(f"building the source: {tiles} tiles at {chip_px} px ...", file=sys.stderr)
        write_source(tmp, cfg)
        tmp.rename(root)
    big = root / BIG_REPO / BIG_PATH
    if not big.exists() or big.stat().st_size != big_mib << 20:
        big.parent.mkdir(parents=True, exist_ok=True)
        with big.open("wb") as fh:
            for _ in range(big_mib):
                fh.write(os.urandom(1 << 20))
    return root


# --------------------------------------------------------------------------- clients (children)
def child_m3leo(endpoint: str, out: str, case: str, workers: int, read_size: int) -> dict:
    from m3leo_cli.config import load_settings
    from m3leo_cli.fetch.runner import run_jobs
    from m3leo_cli.fetch.transfer import FileJob
    from m3leo_cli.hub.client import HubClient

    if read_size:
        import httpcore._sync.http11 as h11conn

        h11conn.HTTP11Connection.READ_NUM_BYTES = read_size
    settings = load_settings({"endpoint": endpoint, "data_dir": out, "workers": workers}, env={})
    if case == "big":
        with HubClient(settings) as c:
            commit = c.revision(BIG_REPO)
            e = next(e for e in c.iter_tree(BIG_REPO, commit) if e.path == BIG_PATH)
            job = FileJob(c.resolve_url(BIG_REPO, commit, e.path), Path(out) / e.path, e.size,
                          "sha256", bytes.fromhex(e.lfs_sha256 or ""))  # fmt: skip
            t0 = time.perf_counter()
            s = run_jobs(c, [job], workers=1)
            dt = time.perf_counter() - t0
        return {"seconds": dt, "files": s.downloaded, "bytes": s.bytes, "failed": s.failed}
    from m3leo_cli.catalog.refresh import ensure_manifest
    from m3leo_cli.mirror.download import download
    from m3leo_cli.selection import build_selection

    ensure_manifest(settings, "miniset", [REGION])  # the catalog is not what we time
    sel = build_selection(edition="miniset", regions=[REGION], modalities=[DATAKIND])
    t0 = time.perf_counter()
    s = download(settings, sel, workers=workers, check_space=False)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "files": s.downloaded, "bytes": s.bytes, "failed": s.failed}  # type: ignore[union-attr]


def child_hf(endpoint: str, out: str, case: str, workers: int) -> dict:
    os.environ.update(HF_ENDPOINT=endpoint, HF_HUB_DISABLE_XET="1", HF_HOME=out + "-hfhome",
                      HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")  # fmt: skip
    from huggingface_hub import snapshot_download

    repo, patterns = (
        (BIG_REPO, [BIG_PATH]) if case == "big" else
        (f"M3LEO-miniset/{REGION}", [f"{PARTITION}/{DATAKIND}/*"])
    )  # fmt: skip
    t0 = time.perf_counter()
    snapshot_download(repo_id=repo, repo_type="dataset", allow_patterns=patterns, local_dir=out,
                      max_workers=workers)  # fmt: skip
    dt = time.perf_counter() - t0
    files = [p for p in Path(out).rglob("*") if p.is_file() and ".cache" not in p.parts]
    return {"seconds": dt, "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "failed": 0}  # fmt: skip


def child_aria2(endpoint: str, out: str, case: str, workers: int) -> dict:
    from m3leo_cli.config import load_settings
    from m3leo_cli.hub.client import HubClient

    settings = load_settings({"endpoint": endpoint, "data_dir": out}, env={})
    repo = BIG_REPO if case == "big" else f"M3LEO-miniset/{REGION}"
    with HubClient(settings) as c:
        commit = c.revision(repo)
        prefix = BIG_PATH if case == "big" else f"{PARTITION}/{DATAKIND}/"
        entries = [e for e in c.iter_tree(repo, commit) if e.type == "file"]
        urls = [c.resolve_url(repo, commit, e.path) for e in entries if e.path.startswith(prefix)]
    lst = Path(out + ".urls")
    lst.write_text("\n".join(urls) + "\n")
    t0 = time.perf_counter()
    subprocess.run(["aria2c", "-q", "-i", str(lst), f"-j{workers}", "-x1",
                    "--file-allocation=none", "-d", out], check=True)  # fmt: skip
    dt = time.perf_counter() - t0
    files = [p for p in Path(out).rglob("*") if p.is_file()]
    return {"seconds": dt, "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "failed": 0}  # fmt: skip


def run_child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def child_main(spec_json: str) -> None:
    kind, *rest = json.loads(spec_json)
    fn = {"m3leo": child_m3leo, "hf": child_hf, "aria2": child_aria2}[kind]
    result = fn(*rest)
    result["rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would carry the parent's peak across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- driver
def measure(srv, work: Path, configs: list[tuple[str, str, int, int]], runs: int) -> list[dict]:
    """Run every (client, case, workers, read_size) ``runs`` times, interleaved, fresh dirs."""
    results: dict[int, list[dict]] = {i: [] for i in range(len(configs))}
    for rnd in range(runs):
        for i, (client, case, workers, read_size) in enumerate(configs):
            out = work / f"{client}-{case}-{i}-{rnd}"
            extra = [read_size] if client == "m3leo" else []
            results[i].append(run_child([client, srv.url, str(out), case, workers, *extra]))
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(str(out) + "-hfhome", ignore_errors=True)
    rows = []
    for i, (client, case, workers, read_size) in enumerate(configs):
        rs = results[i]
        med = statistics.median(r["seconds"] for r in rs)
        rows.append({
            "client": client, "case": case, "workers": workers, "read_size": read_size,
            "seconds": med, "runs": [round(r["seconds"], 3) for r in rs],
            "files": rs[0]["files"], "bytes": rs[0]["bytes"],
            "failed": max(r["failed"] for r in rs),
            "files_s": rs[0]["files"] / med, "mb_s": rs[0]["bytes"] / med / 1e6,
            "rss_mb": max(r["rss_mb"] for r in rs),
        })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=int, default=300)
    ap.add_argument("--chip-px", type=int, default=448)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency", default="0,20", help="comma-separated added latencies (ms)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "m3leo-bench")
    ap.add_argument(
        "--read-sizes",
        default="65536,262144,1048576",
        help="httpcore read sizes to compare for m3leo (bytes)",
    )
    ap.add_argument("--cases", default="small,big", help="small (many tiles) and/or big")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child_main(a.child)
        return
    from m3leo_cli.server import Faults, HubServer

    a.cache.mkdir(parents=True, exist_ok=True)
    root = build_source(a.cache, a.tiles, a.chip_px, a.big_mib)
    work = a.cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    rows: list[dict] = []
    read_sizes = [int(x) for x in a.read_sizes.split(",") if x]
    with HubServer(root, keep_log=False) as srv:
        for lat in [float(x) for x in a.latency.split(",")]:
            srv.faults = Faults(latency_ms=lat)
            for case in a.cases.split(","):
                if case == "big" and lat:
                    continue  # one large file: latency is one round trip, not interesting
                configs = [("hf", case, 8, 0)]
                configs += [("m3leo", case, 8, rs) for rs in read_sizes]
                if case == "small":  # same concurrency for both, at 16
                    configs.append(("hf", case, 16, 0))
                    configs.append(("m3leo", case, 16, read_sizes[0] if read_sizes else 0))
                if shutil.which("aria2c"):
                    configs.append(("aria2", case, 16, 0))
                for r in measure(srv, work, configs, a.runs):
                    r["latency_ms"] = lat
                    rows.append(r)
                    print(_fmt(r), flush=True)
    if not shutil.which("aria2c"):
        print("aria2c is not installed: skipped", flush=True)
    print()
    for lat in sorted({r["latency_ms"] for r in rows}):
        for case in ("small", "big"):
            for r in rows:
                if r["client"] == "hf" or r["case"] != case or r["latency_ms"] != lat:
                    continue
                base = [b for b in rows if b["client"] == "hf" and b["case"] == case
                        and b["latency_ms"] == lat and b["workers"] == r["workers"]]  # fmt: skip
                if base:
                    print(f"ratio {case:5s} +{lat:.0f} ms  {r['client']} w={r['workers']} "
                          f"read={r['read_size']}: {base[0]['seconds'] / r['seconds']:.2f}x "
                          f"snapshot_download w={base[0]['workers']}")  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


def _fmt(r: dict) -> str:
    return (
        f"{r['case']:5s} +{r['latency_ms']:.0f}ms {r['client']:6s} w={r['workers']:<2d} "
        f"read={r['read_size']:<8d} {r['files']:4d} files {r['seconds']:7.3f} s "
        f"{r['files_s']:7.1f} files/s {r['mb_s']:7.1f} MB/s  rss {r['rss_mb']:.0f} MB  "
        f"runs {r['runs']} failed {r['failed']}"
    )


if __name__ == "__main__":
    main()
