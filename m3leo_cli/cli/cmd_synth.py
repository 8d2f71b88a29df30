"""`m3leo synth`: write a synthetic M3LEO source (both editions) to point `m3leo serve` at."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .options import JsonOut, Quiet
from .render import human_bytes, print_json, say


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (created; must be empty).")],
    region: Annotated[
        list[str] | None,
        typer.Option("--region", "-r", help="Region (repeatable). Default: europe."),
    ] = None,
    edition: Annotated[
        list[str] | None,
        typer.Option("--edition", "-e", help="miniset and/or full (repeatable). Default: both."),
    ] = None,
    datakind: Annotated[
        list[str] | None,
        typer.Option(
            "--datakind",
            help="Datakind folder (repeatable), e.g. gssic, s1grd-2020. "
            "Default: every datakind the real repo has.",
        ),
    ] = None,
    tiles: Annotated[int, typer.Option("--tiles", help="Tiles per region.")] = 10,
    chip_px: Annotated[
        int, typer.Option("--chip-px", help="Chip side in pixels (448 is the real size).")
    ] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the repo folders in a non-empty OUT.")
    ] = False,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Write a small synthetic M3LEO source: the Hub repo layout with fake but plausible data.

    Serve it with `m3leo serve OUT` and point HF_ENDPOINT at it to rehearse or benchmark.

    Example: m3leo synth /tmp/m3leo-src --region europe --region conus --tiles 20
    """
    from ..testing.synth import SynthConfig, create_source

    config = SynthConfig(
        regions=tuple(region or ("europe",)),
        editions=tuple(edition or ("miniset", "full")),
        datakinds=tuple(datakind) if datakind else None,
        tiles=tiles,
        chip_px=chip_px,
        seed=seed,
    )
    info = create_source(out, config, overwrite=overwrite)
    if json_out:
        print_json(
            {
                "root": str(info.root),
                "seconds": round(info.seconds, 3),
                "files": info.total_files,
                "bytes": info.total_bytes,
                "repos": [
                    {
                        "repo_id": r.repo_id,
                        "edition": r.edition,
                        "region": r.region,
                        "path": str(r.root),
                        "tiles": len(r.tiles),
                        "files": len(r.files),
                        "bytes": r.total_bytes(),
                        "datakinds": {dk: len(ids) for dk, ids in r.coverage.items()},
                    }
                    for r in info
                ],
            }
        )
        return
    if quiet:
        return
    for r in info:
        say(
            f"{r.repo_id}: {len(r.tiles)} tiles, {len(r.datakinds)} datakinds, "
            f"{len(r.files)} files, {human_bytes(r.total_bytes())}  ->  {r.root}"
        )
    say(
        f"Wrote {info.total_files} files ({human_bytes(info.total_bytes)}) in {info.seconds:.1f} s."
    )
    say(f"Serve it with:  m3leo serve {info.root}")
