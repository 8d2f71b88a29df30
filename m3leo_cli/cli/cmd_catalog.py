"""`m3leo catalog refresh|show`, `m3leo regions`, `m3leo modalities`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app, catalog_app
from .options import (
    DataDir,
    Edition,
    JsonOut,
    Quiet,
    Regions,
    Token,
    edition_for,
    settings_from,
)
from .render import human_bytes, out_console, print_json, say

Revision = Annotated[
    str | None,
    typer.Option("--revision", help="Branch, tag or commit to pin (default: main)."),
]
Force = Annotated[
    bool, typer.Option("--force", help="Rebuild even when the commit has not changed.")
]


def _short(commit: str | None) -> str:
    return (commit or "")[:12] or "-"


@catalog_app.command("refresh")
def catalog_refresh(
    edition: Edition = None,
    region: Regions = None,
    revision: Revision = None,
    force: Force = False,
    token: Token = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Build or update the local manifest from the Hub (one per edition and region).

    Example: m3leo catalog refresh --edition miniset --region europe
    """
    from ..catalog.refresh import refresh
    from ..progress import ProgressEvent

    def progress(event: ProgressEvent) -> None:
        if event.kind == "message" and not quiet:
            say(event.message)

    settings = settings_from(data_dir=data_dir, token=token)
    report = refresh(
        settings,
        edition_for(settings, edition, region),
        region,
        revision,
        progress,
        force=force,
    )
    if json_out:
        print_json(report.to_dict())
    for r in report.regions:
        head = f"{r.region} ({r.edition}, {r.repo_id})"
        if r.status == "unchanged":
            say(f"{head}: unchanged at commit {_short(r.commit)}; nothing to do")
        elif r.status == "created":
            say(
                f"{head}: manifest created at commit {_short(r.commit)}: {r.files} files, "
                f"{r.tiles} tiles, {human_bytes(r.bytes)}"
            )
        else:
            say(
                f"{head}: updated {_short(r.previous_commit)} -> {_short(r.commit)}: "
                f"{len(r.added)} files added, {len(r.removed)} removed, {len(r.changed)} changed"
            )
    for w in report.warnings:
        say(f"warning: {w}")
    if report.absent_note:
        say(f"warning: {report.absent_note}")


@catalog_app.command("show")
def catalog_show(
    edition: Edition = None,
    region: Regions = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
) -> None:
    """Show each cached manifest: path, commit, files, tiles, bytes.

    Example: m3leo catalog show --edition miniset
    """
    from ..catalog.info import manifest_info

    settings = settings_from(data_dir=data_dir)
    rows = manifest_info(settings, edition_for(settings, edition, region), region)
    if json_out:
        print_json({"manifests": rows})
        return
    table = narrow_table(["region", "status", "commit", "refreshed (UTC)", "files", "tiles",
                          "bytes"], right_from=4)  # fmt: skip
    for r in rows:
        table.add_row(
            r["region"],
            r["status"],
            _short(r.get("commit")),
            _when(r.get("refreshed_at")),
            f"{r['files']:,}" if r.get("files") is not None else "-",
            f"{r['tiles']:,}" if r.get("tiles") is not None else "-",
            human_bytes(r.get("bytes")) if r.get("bytes") is not None else "-",
        )
    out_console().print(table)
    if rows:  # the paths, once: each row's file is this pattern with its region
        root = Path(rows[0]["path"]).parent.parent
        say(f"manifests in {root}")
        say("  one per region: region=<region>/manifest.parquet (--json lists each path)")


def _when(stamp: str | None) -> str:
    """An ISO timestamp as `YYYY-MM-DD HH:MM` in UTC (the seconds are in --json)."""
    if not stamp:
        return "-"
    from datetime import UTC, datetime

    try:
        return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp


def narrow_table(heads: list[str], right_from: int = 99, wrap: tuple[int, ...] = ()) -> Any:
    """A table laid out for 80 columns: one space between columns, no edges, cells that do
    not fit wrap (``wrap`` columns fold long words) instead of ending in an ellipsis."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for i, h in enumerate(heads):
        table.add_column(
            h,
            justify="right" if i >= right_from else "left",
            no_wrap=i not in wrap,
            overflow="fold",
        )
    return table


@app.command("regions")
def regions_cmd(data_dir: DataDir = None, json_out: JsonOut = False) -> None:
    """List the six regions, their Hub repos and what the local manifests hold.

    Example: m3leo regions --json
    """
    from ..catalog.info import regions

    rows = regions(settings_from(data_dir=data_dir))
    if json_out:
        print_json({"regions": rows})
        return
    table = narrow_table(["region", "description", "chips (full)", "full manifest",
                          "miniset manifest"], wrap=(1,))  # fmt: skip
    table.columns[2].justify = "right"
    for r in rows:
        cells = []
        for e in ("full", "miniset"):
            m = r["manifests"][e]
            cells.append(
                f"{m['tiles']:,} tiles, {human_bytes(m['bytes'])}"
                if m["status"] == "ok"
                else m["status"]
            )
        table.add_row(r["region"], r["description"], f"{r['total_chips']:,}", *cells)
    out_console().print(table)


@app.command("modalities")
def modalities_cmd(
    region: Regions = None,
    edition: Edition = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
) -> None:
    """List datakinds: aliases, format, bands or variables, resolution, tiles and bytes.

    Example: m3leo modalities --region europe --edition miniset
    """
    from ..catalog.info import modalities

    settings = settings_from(data_dir=data_dir)
    rows = modalities(settings, edition_for(settings, edition, region), region)
    if json_out:
        print_json({"modalities": rows})
        return
    table = narrow_table(["datakind", "fmt", "layers", "m/px", "tiles", "bytes", "aliases"],
                         wrap=(6,))  # fmt: skip
    for i in (3, 4, 5):
        table.columns[i].justify = "right"
    for r in rows:
        n = len(r["bands"] or r["variables"])
        layers = f"{n} band{'s' * (n != 1)}" if r["bands"] else f"{n} var{'s' * (n != 1)}"
        table.add_row(
            r["datakind"],
            {"geotiff": "tif", "netcdf": "nc"}.get(r["format"], "?"),
            layers,
            f"{r['resolution_m']:g}" if r["resolution_m"] else "?",
            "-" if r["tiles"] is None else f"{r['tiles']:,}",
            "-" if r["bytes"] is None else human_bytes(r["bytes"]),
            ", ".join(r["aliases"]) or "-",
        )
    out_console().print(table)
    if any(r["tiles"] is None for r in rows):
        say("tiles/bytes show '-' where no manifest is cached: run `m3leo catalog refresh`")
