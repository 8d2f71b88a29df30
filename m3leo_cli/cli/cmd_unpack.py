"""`m3leo unpack`: turn full-edition shard files already on disk back into tile files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .options import DataDir, EngineOpt, JsonOut, Quiet, SchedulerOpt, Wait, settings_from
from .render import human_bytes, print_json, say

Shards = Annotated[
    list[Path],
    typer.Argument(
        metavar="SHARD", help="Shard files (<split>_<12hex>.zstd.parquet).", show_default=False
    ),
]
Region = Annotated[
    str | None,
    typer.Option("--region", "-r", help="Region of the shards (default: read from the rows)."),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Write <partition>/<datakind>/<id>.<ext> under this folder instead of the store.",
    ),
]


@app.command("unpack")
def unpack_cmd(
    shards: Shards,
    region: Region = None,
    out: Out = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
    wait: Wait = False,
) -> None:
    """Unpack full-edition shards you already have into the per-tile layout of the store.

    Every row's path is checked (inside the store, right region, partition and datakind);
    bad rows are listed and skipped, and the exit code is then 1.

    Example: m3leo unpack ~/dl/s1grd-2020/train_0002540be400.zstd.parquet --region europe
    """
    from ..dist.engine import open_engine
    from ..errors import ShardError
    from ..full.unpacked import unpack_files
    from ..progress import ProgressEvent

    settings = settings_from(data_dir=data_dir, engine=engine, scheduler=scheduler)

    def progress(event: ProgressEvent) -> None:
        if event.kind == "message" and not quiet and not json_out:
            say(event.message)

    with open_engine(settings, progress=progress) as pool:
        summary = unpack_files(
            settings, shards, region=region, out=out, progress=progress, wait=wait, pool=pool
        )
    if json_out:
        print_json(summary.to_dict())
    elif not quiet:
        for r in summary.reports:
            say(f"{r.source}: {len(r.written)} files ({human_bytes(r.bytes)}) for {r.region}")
        where = out if out is not None else settings.data_dir / "full"
        say(f"unpacked {summary.written} files, {human_bytes(summary.bytes)}, into {where}")
    refused = summary.refused
    if refused:
        for source, path, why in refused[:20]:
            say(f"refused {source}: row {path!r}: {why}")
        raise ShardError(
            f"{len(refused)} row(s) refused (first: {refused[0][1]!r}: {refused[0][2]})",
            "those rows were skipped; the rest was unpacked. Check where the shards came from",
        )
