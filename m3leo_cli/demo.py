"""`m3leo demo`: the real commands, end to end, against a synthetic M3LEO served on loopback.

Builds a small synthetic source (both editions of one region), serves it with the Hub protocol
on 127.0.0.1, then runs each command in a child process exactly as a user would type it, with
``HF_ENDPOINT`` pointing at the loopback server and ``M3LEO_DATA_DIR`` at a fresh store. No
network beyond loopback.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import spec
from .errors import M3leoError, UsageError, install_hint
from .progress import ProgressCallback, ProgressEvent, no_progress

REGION = "europe"
MIN_TILES = len(spec.SPLITS)  # the synthetic source gives each split at least one tile


@dataclass
class DemoStep:
    argv: list[str]
    code: int = 0
    seconds: float = 0.0

    @property
    def command(self) -> str:
        return "m3leo " + shlex.join(self.argv)


@dataclass
class DemoReport:
    workdir: Path
    store: Path
    source: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    steps: list[DemoStep] = field(default_factory=list)


def has_viz() -> bool:
    """True when the optional `viz` extra (matplotlib) is installed."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def plan_steps(
    workdir: Path, tile: str, *, viz: bool = True
) -> tuple[list[list[str]], dict[str, Path]]:
    """The commands the demo runs, in order, and the outputs they leave behind.

    Without the `viz` extra the tile picture is left out and the map is the self-contained
    HTML page (which needs no matplotlib).
    """
    out = {
        "picture": workdir / f"{tile}.png",
        "map": workdir / (f"{REGION}-map.png" if viz else f"{REGION}-map.html"),
        "export": workdir / "export-npz",
    }
    if not viz:
        del out["picture"]
    mini = ["--edition", "miniset", "--region", REGION]
    full = ["--edition", "full", "--region", REGION]
    pick = ["--modality", "coherence", "--modality", "s1grd", "--modality", "landcover"]
    steps = [
        ["catalog", "refresh", *mini],
        ["stats", *mini],
        ["download", *mini, *pick],
        ["verify", *mini, *pick],
        ["download", *mini, *pick],
        ["catalog", "refresh", *full],
        ["download", *full, "--modality", "s1grd", "--split", "val"],
        ["stats", "--bands", *mini, "--modality", "coherence"],
        ["info", tile, *mini],
        *([["show", tile, *mini, "--out", str(out["picture"])]] if viz else []),
        ["map", *mini, "--out", str(out["map"])],
        [
            "export",
            *mini,
            "--modality",
            "s1grd",
            "--modality",
            "coherence",
            "--label",
            "landcover",
            "--format",
            "npz",
            "--out",
            str(out["export"]),
        ],
    ]
    return steps, out


def run_demo(
    workdir: Path | None = None,
    *,
    base_env: Mapping[str, str],
    tiles: int = 12,
    progress: ProgressCallback = no_progress,
) -> DemoReport:
    """Run the whole demo; raise M3leoError naming the first command that failed.

    ``base_env`` is the environment the child commands start from (the CLI passes its own);
    every Hub and store variable in it is replaced so the demo never touches real data.
    """
    from .server import HubServer
    from .testing.synth import SynthConfig, write_source

    if tiles < MIN_TILES:  # refused before anything is built or written
        raise UsageError(
            f"--tiles {tiles} is too few: the demo needs at least {MIN_TILES} tiles "
            "(one in each split: train, val and test)",
            f"give --tiles {MIN_TILES} or more (default 12)",
        )
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="m3leo-demo-"))
    elif workdir.exists() and any(workdir.iterdir()):
        raise UsageError(f"{workdir} is not empty", "give an empty or new --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    source, store = workdir / "source", workdir / "store"
    progress(ProgressEvent("message", message=f"building a synthetic M3LEO in {source}"))
    info = write_source(source, SynthConfig(regions=(REGION,), tiles=tiles))
    tile = sorted(info.repo("miniset", REGION).tiles)[0]
    viz = has_viz()
    if not viz:
        progress(
            ProgressEvent(
                "message",
                message="matplotlib is not installed: no tile picture, and the map is HTML "
                f"({install_hint('viz')} for both)",
            )
        )
    steps, outputs = plan_steps(workdir, tile, viz=viz)
    report = DemoReport(workdir, store, source, outputs)

    env = {k: v for k, v in base_env.items() if not k.startswith(("HF_", "M3LEO_"))}
    env.update(
        M3LEO_DATA_DIR=str(store),
        M3LEO_CONFIG=os.devnull,  # no config file: no user config leaks in
        HF_HOME=str(workdir / "hf-home"),
    )
    with HubServer(source) as server:
        env["HF_ENDPOINT"] = server.url
        # the loopback server is reached directly, whatever proxy this machine uses
        bypass = ",".join(filter(None, (env.get("no_proxy") or env.get("NO_PROXY"), server.host)))
        env["no_proxy"] = env["NO_PROXY"] = bypass
        progress(
            ProgressEvent(
                "message",
                message=f"serving it on {server.url} (loopback, for the demo only); the "
                f"commands below run with HF_ENDPOINT={server.url} M3LEO_DATA_DIR={store}",
            )
        )
        for argv in steps:
            step = DemoStep(argv)
            progress(ProgressEvent("message", phase="command", message=f"$ {step.command}"))
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "m3leo_cli", *argv], env=env, check=False)
            step.code, step.seconds = done.returncode, time.perf_counter() - t0
            report.steps.append(step)
            if step.code != 0:
                raise M3leoError(
                    f"demo step failed with exit {step.code}: {step.command}",
                    f"the demo's files are in {workdir}",
                )
    return report
