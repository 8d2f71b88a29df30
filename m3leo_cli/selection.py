"""One selection model shared by every command: what part of M3LEO the user means."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import spec
from .errors import BadBBoxError, BadTileIdError, EmptyInputError, SelectionError

TILE_ID_RE = re.compile(r"^[0-9a-f]{13}$")

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Selection:
    """Filters over the manifest. Empty tuples mean "all"."""

    edition: str = spec.DEFAULT_EDITION
    regions: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()  # user tokens, each valid for spec.resolve_modality
    splits: tuple[str, ...] = ()
    years: tuple[int, ...] = ()
    bbox: BBox | None = None  # (west, south, east, north) in degrees, EPSG:4326
    tiles: tuple[str, ...] = ()
    limit: int | None = None  # at most this many tiles (not files)

    @property
    def region_names(self) -> tuple[str, ...]:
        return self.regions or spec.region_names(self.edition)

    def wants_datakind(self, datakind: str) -> bool:
        if self.modalities and not any(spec.matches_modality(m, datakind) for m in self.modalities):
            return False
        if self.years:
            year = spec.parse_datakind(datakind).year
            return year is None or year in self.years
        return True


def parse_bbox(text: str) -> BBox:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise BadBBoxError(f"malformed bbox {text!r}: expected 4 numbers W,S,E,N")
    try:
        w, s, e, n = (float(p) for p in parts)
    except ValueError:
        raise BadBBoxError(f"malformed bbox {text!r}: not numbers") from None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise BadBBoxError(f"malformed bbox {text!r}: not finite")
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise BadBBoxError(f"bbox {text!r} is outside lon -180..180 / lat -90..90")
    if w >= e or s >= n:
        raise BadBBoxError(f"bbox {text!r} is empty: need W < E and S < N")
    return (w, s, e, n)


def parse_tiles(ids: Iterable[str], source: str = "--tiles") -> tuple[str, ...]:
    out: list[str] = []
    for raw in ids:
        t = raw.strip().lower()
        if not t:
            continue
        if not TILE_ID_RE.match(t):
            raise BadTileIdError(f"bad tile id {raw.strip()!r} in {source}")
        out.append(t)
    return tuple(dict.fromkeys(out))


def read_tiles_file(path: Path) -> tuple[str, ...]:
    """Tile ids one per line (or comma separated); ``#`` starts a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadTileIdError(f"cannot read tiles file {path}: {exc}", "give a text file") from None
    ids: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        ids.extend(line.replace(",", " ").split())
    return parse_tiles(ids, source=str(path))


def build_selection(
    *,
    edition: str = spec.DEFAULT_EDITION,
    regions: Iterable[str] = (),
    modalities: Iterable[str] = (),
    splits: Iterable[str] = (),
    years: Iterable[int] = (),
    bbox: str | None = None,
    tiles: str | None = None,
    tiles_file: Path | None = None,
    limit: int | None = None,
) -> Selection:
    """Validate what a user typed and return a Selection (raises SelectionError subclasses)."""
    ed = spec.get_edition(edition).name
    regs = tuple(dict.fromkeys(spec.get_region(r, ed).name for r in regions))
    mods = tuple(dict.fromkeys(m.strip().lower() for m in modalities))
    for m in mods:
        spec.resolve_modality(m)
    sp = tuple(dict.fromkeys(s.strip().lower() for s in splits))
    for s in sp:
        if s not in spec.SPLITS:
            raise SelectionError(f"unknown split {s!r}", "use --split train, val or test")
    tile_ids: tuple[str, ...] = ()
    if tiles is not None:
        tile_ids = parse_tiles(tiles.split(","))
        if not tile_ids:  # an empty list must never widen to "every tile"
            raise EmptyInputError(
                "--tiles is empty", "give tile ids (--tiles 020d259a89240,...) or leave it out"
            )
    if tiles_file is not None:
        from_file = read_tiles_file(tiles_file)
        if not from_file:
            raise EmptyInputError(
                f"--tiles-file {tiles_file} holds no tile ids",
                "put one tile id per line in it (`m3leo tiles` lists them), or leave it out",
            )
        tile_ids = tuple(dict.fromkeys(tile_ids + from_file))
    year_list = tuple(dict.fromkeys(int(y) for y in years))
    for y in year_list:
        if not 1900 <= y <= 2100:  # never a selection: -1 once meant "the year-less files"
            raise SelectionError(
                f"--year {y} is not a year",
                "give a four-digit year such as --year 2020 (`m3leo modalities` lists the "
                "datakinds and their years), or leave --year out",
            )
    if limit is not None and limit < 1:
        raise SelectionError(
            f"--limit must be at least 1, not {limit}",
            "give --limit N with N >= 1, or leave it out",
        )
    return Selection(
        edition=ed,
        regions=regs,
        modalities=mods,
        splits=sp,
        years=year_list,
        bbox=parse_bbox(bbox) if bbox is not None else None,
        tiles=tile_ids,
        limit=limit,
    )
