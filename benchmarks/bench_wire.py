"""Benchmark: downloads against nginx (not our Python server), end to end as a user types them.

One synthetic miniset region (99 tiles x 7 datakinds, 448 px: ~680 files, ~250 MB) is served
by nginx the way the Hub serves it (benchmarks/nginx_hub.py: API answers, 302 resolves to a
second address, nginx's own ETag and Range). Then, each in a fresh process, into an empty
folder, 16 connections each:

- ``curl -Z`` and ``aria2c -j16`` over the resolve URLs (no hashing, no catalog: the floor);
- ``huggingface_hub.snapshot_download(max_workers=16)`` (revision + tree, HEAD + GET per file);
- ``m3leo download --workers 16`` (revision + tree + CSV/GeoJSON, a Parquet manifest, content
  links by the hundred through the Git LFS batch API, then every file sha256-verified and made
  durable), and once more as most users type it, without ``--workers`` (the number of
  transfers at once adapts).

For m3leo the nginx access log splits the run into start-up (process start to first request),
catalog (revision, tree, the split CSV and GeoJSON, the manifest built from them: up to the
first file request, a batch of links or a tile's resolve), transfer (to the last content
answer) and finish (the filesystem sync that makes the run durable, and the exit).
Every run is repeated with 20 ms added to each
request (the echo module). Each client starts after a ``sync``, so none pays for the previous
one's dirty pages. Install: ``apt-get install nginx libnginx-mod-http-echo aria2``.

``--full N`` adds the full edition: one datakind of N tiles in Parquet shards (448 px s1grd,
96 tiles a shard in one row group: ~25 MB shards), whole shards fetched by curl -Z and aria2c
-j16 (no hashing, no unpacking) and by ``m3leo download --edition full --fetch whole``
(sha256-verified, then unpacked into tile files), with each client's peak RSS.
``--shard-tiles`` and ``--group-tiles`` change the packing: ``--shard-tiles 1152
--group-tiles 480`` gives shards split by their split only (the train one 186 MB) in row groups
of ~128 MB, as Spark's default block size makes them.

    .venv/bin/python benchmarks/bench_wire.py [--tiles 99] [--repeat 2] [--delays 0,20]
                                              [--full 1152 [--shard-tiles 96] [--group-tiles 96]]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nginx_hub  # noqa: E402

REPO = "M3LEO-miniset/europe"
DATAKINDS = ("s1grd-2020", "s2rgbm-2020", "gssic", "esaworldcover-2020", "biomass-2020",
             "ghsbuilts-2020", "srtmdem")  # fmt: skip
OUT = Path(__file__).resolve().parent / "out" / "wire"
CATALOG_FILES = (".csv", ".geojson")  # what a catalog refresh resolves before any tile


def source(tiles: int) -> Path:
    from m3leo_cli.testing.synth import SynthConfig, write_source

    root = OUT / f"src-{tiles}"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        cfg = SynthConfig(regions=("europe",), editions=("miniset",), tiles=tiles, chip_px=448,
                          datakinds=DATAKINDS)  # fmt: skip
        write_source(root, cfg)
        (root / ".complete").write_text("")
    return root


def files_of(root: Path, repo_id: str = REPO) -> list[tuple[str, int]]:
    repo = root / repo_id
    return sorted(
        (p.relative_to(repo).as_posix(), p.stat().st_size)
        for p in repo.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def _env(work: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("M3LEO_", "HF_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(work / "hf-home"), M3LEO_CONFIG=os.devnull,
               HF_HUB_DISABLE_TELEMETRY="1", NO_COLOR="1")  # fmt: skip
    return env


def answers_for(root: Path, repo: str) -> dict:
    """What ``m3leo serve`` answers for ``repo``'s API calls and resolves (nginx replays it)."""
    return nginx_hub.record(
        root, [repo], nginx_hub.api_uris([repo], nginx_hub.commits_of(root, [repo]))
    )


def site(name: str, root: Path, answers: dict, delay_ms: float = 0.0) -> tuple[Path, Path, str]:
    """A fresh nginx site under ``OUT/name``: (its folder, its nginx.conf, the Hub endpoint)."""
    work = OUT / name
    shutil.rmtree(work, ignore_errors=True)
    conf, hub_port, _ = nginx_hub.write_site(work, root, answers, delay_ms)
    return work, conf, f"http://127.0.0.1:{hub_port}"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, start time on the epoch clock nginx logs with)."""
    os.sync()  # the previous client's dirty pages are not this one's to write back
    t_epoch, t0 = time.time(), time.perf_counter()
    res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd[:2])} failed ({res.returncode}):\n{res.stderr.decode()[-2000:]}")
    return time.perf_counter() - t0, t_epoch


def peak_rss(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, epoch start, peak RSS in MB of the process and its children)."""
    out = OUT / "time.txt"
    wall, start = timed(["/usr/bin/time", "-o", str(out), "-f", "%M", *cmd], env)
    return wall, start, int(out.read_text().split()[-1]) / 1024


def file_requests(log: Path, since: float) -> tuple[float | None, float | None, float | None]:
    """Epoch times (nginx logs a request when its answer is sent) after ``since``: the first
    request, the first file request (a batch of links, or a resolve of a tile), the last
    content answer. The catalog's own resolves (the region's split CSV and GeoJSON, which the
    manifest is built from) are the catalog's: the transfer starts after the manifest."""
    first = first_file = last_content = None
    for line in log.read_text().splitlines():
        t, _, uri = line.partition(" ")
        if float(t) < since:
            continue
        first = first if first is not None else float(t)
        tile = "/resolve/" in uri and not uri.endswith(CATALOG_FILES)
        if first_file is None and (tile or uri.endswith("/lfs/objects/batch")):
            first_file = float(t)
        if uri.startswith("/lfs/"):
            last_content = float(t)
    return first, first_file, last_content


def baseline_package(rev: str) -> Path:
    """m3leo_cli as it was at git revision ``rev``, in a folder of its own (byte-compiled):
    put on PYTHONPATH, the same command runs the old code beside today's in one session."""
    import compileall

    dest = OUT / f"baseline-{rev}"
    if not (dest / "m3leo_cli").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        repo = Path(__file__).resolve().parent.parent
        tar = subprocess.run(["git", "-C", str(repo), "archive", rev, "m3leo_cli"],
                             check=True, capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    compileall.compile_dir(dest / "m3leo_cli", quiet=1)
    return dest


def run_clients(
    work: Path,
    endpoint: str,
    files: list[tuple[str, int]],
    py: str,
    baseline: tuple[str, Path] | None = None,
) -> dict:
    env = _env(work, endpoint)
    urls = [f"{endpoint}/datasets/{REPO}/resolve/main/{p}" for p, _ in files]
    res: dict[str, dict] = {}

    def fresh(name: str) -> Path:
        d = work / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    d = fresh("curl")
    cfg = d / "list.cfg"
    pairs = list(zip(urls, files, strict=True))
    cfg.write_text("".join(f'url = "{u}"\noutput = "{d}/{p}"\n' for u, (p, _) in pairs))
    res["curl -Z 16"] = {"s": timed(["curl", "-Z", "--parallel-max", "16", "-s", "-L",
                                     "--create-dirs", "-K", str(cfg)], env)[0]}  # fmt: skip
    d = fresh("aria2c")
    lst = d / "list.txt"
    lst.write_text("".join(f"{u}\n  out={p}\n" for u, (p, _) in pairs))
    res["aria2c -j16"] = {"s": timed(["aria2c", "-q", "-j16", "-x1", "--auto-file-renaming=false",
                                      "--allow-overwrite=true", "-d", str(d), "-i", str(lst)],
                                     env)[0]}  # fmt: skip
    d = fresh("hf")
    code = (f"from huggingface_hub import snapshot_download; snapshot_download({REPO!r}, "
            f"repo_type='dataset', local_dir={str(d)!r}, max_workers=16)")  # fmt: skip
    res["snapshot_download 16"] = {"s": timed([py, "-c", code], env)[0]}
    d = fresh("m3leo")
    env_m = dict(env, M3LEO_DATA_DIR=str(d))
    m3leo = str(Path(py).parent / "m3leo")
    log = work / "access.log"
    wall, start = timed([m3leo, "download", "--edition", "miniset", "--region", "europe",
                         "--workers", "16", "-q"], env_m)  # fmt: skip
    first, first_file, last = file_requests(log, start)
    row = {"s": wall}
    if first is not None and first_file is not None and last is not None:
        row["startup"] = first - start
        row["catalog"] = first_file - first
        row["transfer"] = last - first_file
        row["finish"] = wall - (last - start)  # the filesystem sync, the journal, the exit
    res["m3leo download 16"] = row
    d = fresh("m3leo-default")  # as most users type it: the transfers at once adapt
    wall, _ = timed([m3leo, "download", "--edition", "miniset", "--region", "europe", "-q"],
                    dict(env, M3LEO_DATA_DIR=str(d)))  # fmt: skip
    res["m3leo download (default)"] = {"s": wall}
    if baseline is not None:  # the same command on an older revision's package
        rev, pkg = baseline
        d = fresh("m3leo-baseline")
        cmd = [py, "-c", "import sys; from m3leo_cli.cli import main; sys.exit(main())"]
        wall, start = timed([*cmd, "download", "--edition", "miniset", "--region", "europe",
                             "--workers", "16", "-q"],
                            dict(env, M3LEO_DATA_DIR=str(d), PYTHONPATH=str(pkg)))  # fmt: skip
        first, first_file, last = file_requests(log, start)
        row = {"s": wall}
        if first is not None and first_file is not None and last is not None:
            row.update(startup=first - start, catalog=first_file - first,
                       transfer=last - first_file, finish=wall - (last - start))  # fmt: skip
        res[f"m3leo@{rev} download 16"] = row
    return res


FULL_REPO = "M3LEO/europe"


def full_source(tiles: int, per_shard: int = 96, per_group: int = 96) -> Path:
    from m3leo_cli.testing.synth import SynthConfig, write_source

    root = OUT / (f"full-{tiles}-96" if (per_shard, per_group) == (96, 96)
                  else f"full-{tiles}-{per_shard}-{per_group}")  # fmt: skip
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        cfg = SynthConfig(regions=("europe",), editions=("full",), tiles=tiles, chip_px=448,
                          datakinds=("s1grd-2020",), tiles_per_shard=per_shard,
                          rows_per_row_group=per_group)  # fmt: skip
        write_source(root, cfg)
        (root / ".complete").write_text("")
    return root


def run_full(work: Path, endpoint: str, root: Path, py: str) -> dict:
    """Whole shards: curl, aria2c (no hashing), m3leo (sha256 + unpack), with peak RSS."""
    env = _env(work, endpoint)
    shards = [(p, n) for p, n in files_of(root, FULL_REPO) if p.endswith(".parquet")]
    urls = [f"{endpoint}/datasets/{FULL_REPO}/resolve/main/{p}" for p, _ in shards]
    res: dict[str, dict] = {}
    for name in ("curl", "aria2c", "m3leo"):
        shutil.rmtree(work / name, ignore_errors=True)
        (work / name).mkdir(parents=True)
    d = work / "curl"
    (d / "list.cfg").write_text(
        "".join(
            f'url = "{u}"\noutput = "{d}/{p}"\n' for u, (p, _) in zip(urls, shards, strict=True)
        )
    )
    s, _, rss = peak_rss(["curl", "-Z", "--parallel-max", "16", "-s", "-L", "--create-dirs",
                          "-K", str(d / "list.cfg")], env)  # fmt: skip
    res["curl -Z 16"] = {"s": s, "rss": rss}
    d = work / "aria2c"
    (d / "list.txt").write_text(
        "".join(f"{u}\n  out={p}\n" for u, (p, _) in zip(urls, shards, strict=True))
    )
    s, _, rss = peak_rss(["aria2c", "-q", "-j16", "-x1", "--auto-file-renaming=false",
                          "--allow-overwrite=true", "-d", str(d), "-i", str(d / "list.txt")],
                         env)  # fmt: skip
    res["aria2c -j16"] = {"s": s, "rss": rss}
    for fetch in ("whole", "ranges"):
        shutil.rmtree(work / "m3leo", ignore_errors=True)
        env_m = dict(env, M3LEO_DATA_DIR=str(work / "m3leo"))
        s, start, rss = peak_rss([str(Path(py).parent / "m3leo"), "download", "--edition", "full",
                                  "--region", "europe", "--fetch", fetch, "--workers", "16",
                                  "-q"], env_m)  # fmt: skip
        res[f"m3leo download 16 --fetch {fetch}"] = {
            "s": s,
            "rss": rss,
            **shard_phases(work / "access.log", start, s),
        }
    return res


def shard_phases(log: Path, start: float, wall: float) -> dict:
    """From nginx's log (times at each answer's end): the shards' download window, from the
    first shard request (a resolve, or the batch of links) to the last shard byte, and what the
    run did after it (unpacking)."""
    shard = [float(t) for t, _, uri in (ln.partition(" ") for ln in log.read_text().splitlines())
             if float(t) >= start and uri.endswith((".parquet", "/lfs/objects/batch"))]  # fmt: skip
    if not shard:
        return {}
    return {"download": max(shard) - min(shard), "after": start + wall - max(shard)}


def bench_full(tiles: int, repeat: int, per_shard: int = 96, per_group: int = 96) -> dict:
    root = full_source(tiles, per_shard, per_group)
    shards = [(p, n) for p, n in files_of(root, FULL_REPO) if p.endswith(".parquet")]
    total = sum(n for _, n in shards)
    answers = answers_for(root, FULL_REPO)
    print(f"\nfull edition: {len(shards)} shards, {total / 1e6:.0f} MB "
          f"({total / len(shards) / 1e6:.0f} MB each)")  # fmt: skip
    work, conf, endpoint = site("site-full", root, answers)
    runs: dict[str, list[dict]] = {}
    with nginx_hub.Nginx(conf):
        for _ in range(repeat):
            for name, row in run_full(work, endpoint, root, sys.executable).items():
                runs.setdefault(name, []).append(row)
    print(f"{'client':34} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12}  phases (m3leo)")
    best = {k: min(v, key=lambda r: r["s"]) for k, v in runs.items()}
    for name, row in best.items():
        extra = ""
        if "download" in row:
            extra = (f"  shards {row['download']:.2f} s = {total / row['download'] / 1e6:,.0f} "
                     f"MB/s, then {row['after']:.2f} s unpacking the last ones")  # fmt: skip
        print(f"{name:34} {row['s']:8.2f} {total / row['s'] / 1e6:7.0f} {row['rss']:12.0f}{extra}")
    aria = best["aria2c -j16"]["s"]
    for name, row in best.items():
        if "download" in row:
            print(f"{name}: shard download MB/s vs aria2c -j16: {aria / row['download']:.2f}x, "
                  f"end to end with unpacking: {aria / row['s']:.2f}x")  # fmt: skip
    return {k: statistics.median(r["s"] for r in v) for k, v in runs.items()}


def compile_package() -> None:
    """Byte-compile m3leo_cli as ``pip install`` does, so each run starts as installed (an
    editable checkout under ``PYTHONDONTWRITEBYTECODE=1`` would compile it on every start)."""
    import compileall

    import m3leo_cli

    compileall.compile_dir(Path(m3leo_cli.__file__).parent, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=99)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--delays", default="0,20")
    ap.add_argument("--full", type=int, default=0, help="tiles of the full-edition run (0: none)")
    ap.add_argument("--shard-tiles", type=int, default=96, help="full edition: tiles a shard")
    ap.add_argument("--group-tiles", type=int, default=96, help="full edition: tiles a row group")
    ap.add_argument("--baseline", help="also run m3leo as it was at this git revision")
    args = ap.parse_args()
    for tool in ("nginx", "curl", "aria2c"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install nginx libnginx-mod-http-echo aria2 curl")
    compile_package()
    base = (args.baseline, baseline_package(args.baseline)) if args.baseline else None
    root = source(args.tiles)
    files = files_of(root)
    total = sum(s for _, s in files)
    answers = answers_for(root, REPO)
    print(f"{len(files)} files, {total / 1e6:.0f} MB ({total / len(files) / 1e3:.0f} KB each)")
    summary: dict = {}
    for delay in (float(x) for x in args.delays.split(",") if x):  # --delays "": none
        work, conf, endpoint = site(f"site-{delay:g}ms", root, answers, delay)
        runs: dict[str, list[dict]] = {}
        with nginx_hub.Nginx(conf):
            for _ in range(args.repeat):
                clients = run_clients(work, endpoint, files, sys.executable, base)
                for name, row in clients.items():
                    runs.setdefault(name, []).append(row)
        print(f"\n+{delay:g} ms per request (best of {args.repeat}):")
        print(f"{'client':28} {'seconds':>8} {'files/s':>8} {'MB/s':>7}  phases (m3leo)")
        best = {}
        for name, rows in runs.items():
            row = min(rows, key=lambda r: r["s"])
            best[name] = row
            phases = ""
            if "transfer" in row:
                tfps = len(files) / row["transfer"]
                phases = (f"start-up {row['startup']:.2f} s, catalog {row['catalog']:.2f} s, "
                          f"transfer {row['transfer']:.2f} s = {tfps:,.0f} files/s, "
                          f"{total / row['transfer'] / 1e6:,.0f} MB/s, "
                          f"finish {row['finish']:.2f} s")  # fmt: skip
            print(f"{name:28} {row['s']:8.2f} {len(files) / row['s']:8.0f} "
                  f"{total / row['s'] / 1e6:7.0f}  {phases}")  # fmt: skip
        for mine in ("m3leo download 16", "m3leo download (default)"):
            m = best[mine]["s"]
            ratios = {k: v["s"] / m for k, v in best.items() if k not in (
                "m3leo download 16", "m3leo download (default)")}  # fmt: skip
            print(f"{mine} speed vs " + ", ".join(f"{k}: {r:.2f}x" for k, r in ratios.items()))
        summary[f"{delay:g}ms"] = {k: statistics.median(r["s"] for r in v) for k, v in runs.items()}
    if args.full:
        summary["full"] = bench_full(args.full, args.repeat, args.shard_tiles, args.group_tiles)
    (OUT / "last.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
