"""Options shared by many commands, defined once as Annotated aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import Settings, load_settings
from ..selection import Selection, build_selection

Edition = Annotated[
    str | None,
    typer.Option(
        "--edition",
        "-e",
        help="full (Parquet shards), miniset (plain files) or local (your own regions). "
        "Default: the one edition the store holds manifests of, else full.",
        show_default=False,
    ),
]
Regions = Annotated[
    list[str] | None,
    typer.Option(
        "--region",
        "-r",
        help="Region (repeatable): china, conus, europe, middleeast, "
        "pakin, southamerica, or a local region's name. Default: all.",
    ),
]
Modalities = Annotated[
    list[str] | None,
    typer.Option(
        "--modality",
        "-m",
        help="Datakind, family or alias (repeatable), e.g. gssic, "
        "s1grd, s1grd-2020, coherence, rgb. Default: all.",
    ),
]
Splits = Annotated[
    list[str] | None, typer.Option("--split", "-s", help="train, val or test (repeatable).")
]
Years = Annotated[list[int] | None, typer.Option("--year", help="Year (repeatable), e.g. 2020.")]
BBoxOpt = Annotated[str | None, typer.Option("--bbox", help="W,S,E,N in degrees (EPSG:4326).")]
TilesOpt = Annotated[str | None, typer.Option("--tiles", help="Comma-separated tile ids.")]
TilesFile = Annotated[
    Path | None, typer.Option("--tiles-file", help="File with tile ids, one per line.")
]
Limit = Annotated[int | None, typer.Option("--limit", help="At most this many tiles.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Store root (default: $M3LEO_DATA_DIR or the user data dir)."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Where the work runs: local (this process) or dask (a Dask cluster). "
        "Default: M3LEO_ENGINE, the config file, else local.",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="With --engine dask: the scheduler's address, e.g. tcp://10.0.0.5:8786 "
        "(M3LEO_DASK_SCHEDULER); none: a LocalCluster on this machine.",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "--max-workers",
        "-w",
        help="Concurrent transfers (default 16; a miniset download given no number here, in "
        "M3LEO_WORKERS or in the config file adds more, up to 64, while that pays).",
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Hub token (default: $HF_TOKEN, else the one `hf auth login` stored). Never shown.",
        show_default=False,
    ),
]
Revision = Annotated[
    str | None,
    typer.Option(
        "--revision",
        help="Branch, tag or commit the manifest must come from (default: main; "
        "pin a commit for reproducible runs).",
    ),
]
Wait = Annotated[
    bool, typer.Option("--wait", help="If another run holds the store lock, wait for it.")
]


def settings_from(**flags: Any) -> Settings:
    """Settings with command-line flags on top (None means "not given"); an explicit token
    that will cross plain http:// to another machine is said once, on stderr."""
    from ..config import token_warning

    settings = load_settings(flags)
    line = token_warning(settings)
    if line is not None:
        from .render import say

        say(line)
    return settings


def edition_for(
    settings: Settings | None, edition: str | None, regions: list[str] | None = None
) -> str:
    """``--edition`` when given; else the one story every command tells (catalog.editions):
    the store's only edition, or full. An inferred edition is said in one line on stderr."""
    if edition is not None:
        return edition
    if settings is None:
        from ..spec import DEFAULT_EDITION

        return DEFAULT_EDITION
    from ..catalog.editions import default_edition
    from .render import say

    chosen, why = default_edition(settings, regions or ())
    if why is not None:
        say(f"edition: {chosen} ({why}; --edition chooses another)")
    return chosen


def selection_from(
    edition: str | None,
    region: list[str] | None,
    modality: list[str] | None,
    split: list[str] | None = None,
    year: list[int] | None = None,
    bbox: str | None = None,
    tiles: str | None = None,
    tiles_file: Path | None = None,
    limit: int | None = None,
    *,
    settings: Settings | None = None,
) -> Selection:
    return build_selection(
        edition=edition_for(settings, edition, region),
        regions=region or (),
        modalities=modality or (),
        splits=split or (),
        years=year or (),
        bbox=bbox,
        tiles=tiles,
        tiles_file=tiles_file,
        limit=limit,
    )
