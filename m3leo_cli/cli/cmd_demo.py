"""`m3leo demo`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..demo import run_demo
from ..progress import ProgressEvent
from .app import app
from .render import err_console, say


def _show(event: ProgressEvent) -> None:
    if event.phase == "command":
        err_console().print(f"\n[bold cyan]{event.message}[/]", markup=True, highlight=False)
    else:
        say(event.message)


@app.command("demo")
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Empty folder for the demo (default: a new temp folder)."),
    ] = None,
    tiles: Annotated[
        int,
        typer.Option("--tiles", help="Tiles in the synthetic region (at least 3: one per split)."),
    ] = 12,
) -> None:
    """Run the real commands end to end on a synthetic M3LEO served on loopback (no network).

    Example: m3leo demo --workdir /tmp/m3leo-demo
    """
    report = run_demo(workdir, base_env=dict(os.environ), tiles=tiles, progress=_show)
    total = sum(s.seconds for s in report.steps)
    say(f"\nDemo finished: {len(report.steps)} commands in {total:.1f} s.")
    say(f"  store (Hub layout + manifests): {report.store}")
    for name, path in report.outputs.items():
        say(f"  {name}: {path}")
    say(f"  synthetic source: {report.source}")
    say("The demo's server has stopped. To go on with its store (offline, no server needed):")
    say(f"  export M3LEO_DATA_DIR={report.store}")
    say("  m3leo stats --edition miniset --region europe")
    say(f"To reach its Hub again: m3leo serve {report.source} --port 0 (in another shell),")
    say("  then export HF_ENDPOINT=<the URL it prints>")
