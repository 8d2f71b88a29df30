"""`m3leo verify` and `m3leo clean`: check the local files, drop what interrupted runs left."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app
from .cmd_download import _progress
from .options import (
    BBoxOpt,
    DataDir,
    Edition,
    JsonOut,
    Limit,
    Modalities,
    Quiet,
    Regions,
    Revision,
    Splits,
    TilesFile,
    TilesOpt,
    Token,
    Wait,
    Workers,
    Years,
    selection_from,
    settings_from,
)
from .render import human_bytes, not_published, print_json, say


@app.command("verify")
def verify_cmd(
    edition: Edition = None,
    region: Regions = None,
    modality: Modalities = None,
    split: Splits = None,
    year: Years = None,
    bbox: BBoxOpt = None,
    tiles: TilesOpt = None,
    tiles_file: TilesFile = None,
    limit: Limit = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Re-download the missing and corrupt files.")
    ] = False,
    workers: Workers = None,
    wait: Wait = False,
    revision: Revision = None,
    token: Token = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Re-hash exactly the selected local files against the manifest; report what is wrong.

    Example: m3leo verify --edition miniset --region europe --modality gssic --repair
    """
    from ..mirror.verify import verify

    settings = settings_from(data_dir=data_dir, workers=workers, revision=revision, token=token)
    sel = selection_from(
        edition, region, modality, split, year, bbox, tiles, tiles_file, limit, settings=settings
    )
    progress, bar = _progress(quiet, json_out, "verify", settings.progress_bars)
    try:
        rep = verify(settings, sel, repair=repair, workers=workers, progress=progress, wait=wait)
    finally:
        if bar is not None:
            bar.close()
    if json_out:
        print_json(rep.to_dict())
    elif not quiet:
        refused = f", {len(rep.refused)} refused" if rep.refused else ""
        refused = (f", {len(rep.linked)} linked" if rep.linked else "") + refused
        say(
            f"checked {rep.checked} files: {rep.ok} ok, {len(rep.missing)} missing, "
            f"{len(rep.corrupt)} corrupt{refused}"
        )
        if rep.unpublished:
            say(not_published(len(rep.unpublished)) + ": nothing to check")
        for p in rep.missing[:20]:
            say(f"missing {p}")
        for p in rep.corrupt[:20]:
            say(f"corrupt {p}")
        for p in rep.linked[:20]:
            say(f"linked {p}: a link or a hard link; an edit made elsewhere would edit the store")
        for p, why in rep.refused:
            say(f"refused {p}: {why}")
        if rep.unchecked and sel.edition == "full":
            say(
                f"{len(rep.unchecked)} unchecked: present, but with no size and sha256 recorded "
                "by m3leo's unpacking (put there by other means); --repair leaves them alone"
            )
        elif rep.unchecked:
            say(f"{len(rep.unchecked)} files have no checksum in the manifest (size checked)")
        if rep.parts:
            say(
                f"{len(rep.parts)} stray .part files (a download was interrupted): "
                "re-run the download to resume them, or `m3leo clean` to remove them"
            )
        if rep.repaired is not None:
            r = rep.repaired
            say(f"repair: downloaded {r.downloaded}, failed {r.failed}")
    if rep.problems:
        from ..errors import ChecksumMismatchError, StoreError

        left = rep.problems - len(rep.refused)
        if rep.refused and not left:  # only paths that no repair can write to are left
            raise StoreError(
                f"{len(rep.refused)} selected file(s) could not be checked or repaired "
                f"(first: {rep.refused[0][0]}: {rep.refused[0][1]})",
                "move away what stands in those files' places (listed above), then re-run "
                "with --repair",
            )
        raise ChecksumMismatchError(
            f"{rep.problems} selected file(s) are missing, corrupt or linked",
            "re-run `m3leo ingest` (or `m3leo gee`) for that datakind: your own files have no "
            "source to repair from"
            if sel.edition == "local"
            else "run the same command with --repair"
            if rep.repaired is None
            else f"re-run; failures are in {rep.repaired.report_path}",
        )


@app.command("clean")
def clean_cmd(
    edition: Annotated[
        str | None, typer.Option("--edition", "-e", help="Only this edition (default: both).")
    ] = None,
    region: Regions = None,
    shards: Annotated[
        bool,
        typer.Option(
            "--shards",
            help="Also remove the cached whole shards (kept by `m3leo download --keep-shards`) in "
            "<data dir>/.m3leo/shards/.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
    wait: Wait = False,
) -> None:
    """Remove stray .part files left by interrupted downloads (finished files are untouched).

    Partial shard downloads under <data dir>/.m3leo/shards/ go too; --shards also removes the
    cached whole shards. Unpacked tiles are never touched.

    Example: m3leo clean --region europe --shards
    """
    from .. import spec
    from ..mirror.clean import clean

    settings = settings_from(data_dir=data_dir)
    ed = spec.get_edition(edition).name if edition is not None else None  # "" is no edition
    regs = [spec.get_region(r, ed).name for r in region or ()]
    rep = clean(settings, ed, regs, dry_run=dry_run, shards=shards, wait=wait)
    if json_out:
        print_json(rep.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    for p in rep.removed:
        say(f"{verb} {p}")
    cached = f" and {rep.shards} cached shards" if shards else ""
    freed = "would free" if dry_run else "freed"
    say(f"{verb} {rep.parts} .part files{cached}: {freed} {human_bytes(rep.bytes)}")
