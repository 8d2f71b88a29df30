"""`m3leo train OVERRIDES...` and `m3leo evaluate RUN`: the Hydra experiments (train extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .app import app
from .options import DataDir, JsonOut, Quiet, settings_from
from .render import err_console, out_console, print_json


def _reporter(quiet: bool) -> Any:
    """Messages and one line per epoch on stderr, and a per-batch bar with rate and ETA (on a
    terminal; piped, a progress line every 10 s instead)."""
    import time

    from ..progress import ProgressEvent

    state: dict[str, Any] = {"bar": None, "task": None, "done": 0, "total": None}

    def batch(event: ProgressEvent) -> None:
        con = err_console()
        if event.kind == "start":
            state.update(done=0, total=event.total_files, t0=time.monotonic(), shown=0.0)
            epoch = int(event.extra.get("epoch", 0)) + 1
            state["label"] = f"epoch {epoch}/{event.extra.get('epochs')}"
            if con.is_terminal:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,  # fmt: skip
                    TimeRemainingColumn,
                )

                state["bar"] = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=con, transient=True,
                )  # fmt: skip
                state["task"] = state["bar"].add_task(
                    state["label"], total=event.total_files, rate=""
                )
                state["bar"].start()
        elif event.kind == "advance":
            state["done"] += event.files
            elapsed = time.monotonic() - state["t0"]
            rate = state["done"] / elapsed if elapsed > 0 else 0.0
            if state["bar"] is not None:
                state["bar"].update(state["task"], advance=event.files, rate=f"{rate:.2f} batch/s")
            elif elapsed - state["shown"] >= 10.0:
                state["shown"] = elapsed
                total = state["total"]
                left = (total - state["done"]) / rate if total and rate else None
                eta = f", ETA {left:.0f} s" if left is not None else ""
                con.print(
                    f"{state['label']}: batch {state['done']}/{total or '?'}, "
                    f"{rate:.2f} batch/s{eta}",
                    markup=False,
                    highlight=False,
                )
        elif event.kind == "done" and state["bar"] is not None:
            state["bar"].stop()
            state["bar"] = None

    def report(event: ProgressEvent) -> None:
        if quiet:
            return
        if event.phase == "batch":
            batch(event)
        elif event.kind == "message":
            err_console().print(event.message, markup=False, highlight=False)
        elif event.kind == "advance" and event.phase == "train":
            metrics = event.extra.get("metrics", {})
            shown = "  ".join(
                f"{k} {v:.4g}"
                for k, v in sorted(metrics.items())
                if not k.endswith(("_step", "_epoch"))  # Lightning's copies of train_loss
            )
            epoch = int(event.extra.get("epoch", 0)) + 1
            err_console().print(
                f"epoch {epoch}/{event.total_files}  {shown}", markup=False, highlight=False
            )

    return report


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train_cmd(
    overrides: list[str] = typer.Argument(
        None,
        help="Hydra overrides: experiment=<task>/<input> and any key=value "
        "(trainer.max_epochs=1 data.regions=[europe] hydra.run.dir=runs/x).",
        show_default=False,
    ),
    list_experiments: bool = typer.Option(
        False, "--list", help="List the packaged experiments (and the authors' names) and exit."
    ),
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Train a baseline (UNet) on the local store with a packaged Hydra experiment.

    Needs the train extra (install your torch build first): pip install '.[train]' in a clone
    of m3leo, pip install 'm3leo-cli[train]' from a package index.
    The run folder (hydra.run.dir) gets config.yaml, metrics.csv and checkpoints/.

    Example: m3leo train experiment=esawc/gssic trainer.max_epochs=1 data.edition=miniset
    data.regions=[europe]

    Without downloading first, streamed from the full edition's shards on the Hub: m3leo train
    experiment=esawc/s1grd data.source=hub data.edition=full data.regions=[europe]
    """
    if list_experiments:
        from ..train.experiments import aliases, experiments

        names, alias = experiments(), aliases()
        if json_out:
            print_json({"experiments": names, "aliases": alias})
        else:
            for name in names:
                out_console().print(name, markup=False, highlight=False)
            out_console().print("\nthe authors' names (spaceml-org/M3LEO configs/) -> m3leo's:",
                                markup=False, highlight=False)  # fmt: skip
            for theirs, ours in alias.items():
                out_console().print(f"{theirs} -> {ours}", markup=False, highlight=False)
        return
    from ..train.run import train

    result = train(overrides or [], settings_from(data_dir=data_dir), progress=_reporter(quiet))
    if json_out:
        print_json(result.as_dict())
        return
    con = err_console()
    con.print(f"trained {result.experiment}: {result.epochs} epochs in {result.seconds:.1f} s",
              markup=False, highlight=False)  # fmt: skip
    for k, v in sorted(result.metrics.items()):
        con.print(f"  {k:<18} {v:.4g}", markup=False, highlight=False)
    con.print(f"run folder: {result.run_dir}", markup=False, highlight=False)
    con.print(f"score the test split: m3leo evaluate {result.run_dir}",
              markup=False, highlight=False)  # fmt: skip


@app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Argument(..., help="A run folder written by `m3leo train`."),
    split: str = typer.Option(
        "test", "--split", help="Which split to score: test, val, train (scores named <split>_*)."
    ),
    data_dir: DataDir = None,
    json_out: JsonOut = False,
) -> None:
    """Score a trained run (its best checkpoint) on a split of its own config (test by
    default), normalised with the statistics it was trained with; writes <split>_metrics.json.

    Example: m3leo evaluate runs/2026-01-01/12-00-00 --json
    """
    from ..train.checks import check_split

    check_split(split)  # a typo fails before torch is imported
    from ..train.run import evaluate

    out = evaluate(run, settings_from(data_dir=data_dir), split=split)
    if json_out:
        print_json(out)
        return
    con = out_console()
    con.print(f"{out['split']} split, {out['samples']} tiles, {out['checkpoint']}", markup=False)
    for k, v in out["metrics"].items():
        con.print(f"  {k:<12} {v:.4g}", markup=False, highlight=False)
