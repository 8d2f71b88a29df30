"""Where one tile is: region, split, bounds, its files remotely (manifest) and locally (store).

Used by ``m3leo info`` and ``m3leo show``. Reads only the manifest rows of that tile (predicate
pushdown on ``tile_id``); close matches are looked up only when the tile does not exist.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import spec
from ..config import Settings
from ..errors import (
    BadTileIdError,
    CorruptTileError,
    ManifestNotFoundError,
    TileNotFoundError,
    TileNotLocalError,
)
from ..selection import parse_tiles
from ..store.layout import Store


@dataclass
class TileFile:
    datakind: str
    path: str  # repo path
    local_path: Path
    local: bool
    size: int | None
    bands: tuple[str, ...] | None = None  # stored band names of the local file
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    error: str | None = None  # e.g. "corrupt: ..." when the local file cannot be read

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["local_path"] = str(self.local_path)
        d["bands"] = list(self.bands) if self.bands is not None else None
        d["shape"] = list(self.shape) if self.shape is not None else None
        return d


@dataclass
class TileInfo:
    tile_id: str
    edition: str
    region: str
    split: str | None
    bbox: tuple[float, float, float, float] | None
    files: list[TileFile] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tile_id": self.tile_id,
            "edition": self.edition,
            "region": self.region,
            "split": self.split,
            "bbox": list(self.bbox) if self.bbox else None,
            "remote": [f.datakind for f in self.files],
            "local": [f.datakind for f in self.files if f.local],
            "files": [f.as_dict() for f in self.files],
        }

    def download_command(self, datakinds: Sequence[str] = ()) -> str:
        mods = "".join(f" --modality {d}" for d in datakinds)
        return (
            f"m3leo download --edition {self.edition} --region {self.region}{mods} "
            f"--tiles {self.tile_id}"
        )


def _manifests(store: Store, edition: str, regions: Sequence[str]) -> list[tuple[str, Path]]:
    found = [(r, store.manifest_path(edition, r)) for r in regions]
    found = [(r, p) for r, p in found if p.exists()]
    if not found:
        raise ManifestNotFoundError(
            f"no {edition} manifest cached for {', '.join(regions)}",
            f"run `m3leo catalog refresh --edition {edition}"
            + "".join(f" --region {r}" for r in regions if len(regions) < len(spec.REGIONS))
            + "`",
        )
    return found


def _close_ids(paths: list[Path], tile_id: str) -> list[str]:
    from ..catalog.manifest import read_manifest

    ids = read_manifest(paths, columns=["tile_id"]).column("tile_id").unique().to_pylist()
    ids = [i for i in ids if i]
    near = [i for i in ids if i[:2] == tile_id[:2]] or ids
    return difflib.get_close_matches(tile_id, near, n=3, cutoff=0.5)


def locate_tile(
    settings: Settings,
    tile_id: str,
    *,
    edition: str,
    regions: Sequence[str] = (),
    modalities: Sequence[str] = (),
    read_bands: bool = True,
) -> TileInfo:
    """The tile's place and files; TileNotFoundError (with close matches) if no manifest has it."""
    import pyarrow.compute as pc

    from ..catalog.manifest import read_manifest

    ids = parse_tiles([tile_id], source="TILE")
    if not ids:
        raise BadTileIdError("no tile id given")
    tid = ids[0]
    ed = spec.get_edition(edition).name
    regs = spec.resolve_regions(regions, ed)
    store = Store(settings.data_dir)
    found = _manifests(store, ed, regs)
    filt = (pc.field("tile_id") == tid) & (pc.field("kind") == "tile")
    table = read_manifest([p for _, p in found], filter=filt)
    if table.num_rows == 0:
        close = _close_ids([p for _, p in found], tid)
        where = f"{ed} edition, " + (", ".join(r for r, _ in found))
        hint = (
            "did you mean " + " or ".join(close) + "?"
            if close
            else "`m3leo map --region R` shows the tiles of a region"
        )
        raise TileNotFoundError(f"tile {tid} is not in the manifest ({where})", hint)
    rows = sorted(table.to_pylist(), key=lambda r: r["datakind"] or "")
    first = rows[0]
    bbox = None
    if first.get("lon_min") is not None:
        bbox = (first["lon_min"], first["lat_min"], first["lon_max"], first["lat_max"])
    info = TileInfo(tid, ed, first["region"], first.get("split"), bbox)
    for row in rows:
        dk = row["datakind"]
        if modalities and not any(spec.matches_modality(m, dk) for m in modalities):
            continue
        local = store.local_path(ed, row["region"], row["path"])
        tf = TileFile(dk, row["path"], local, local.is_file(), row.get("size"))
        if tf.local and read_bands:
            _describe(tf)
        info.files.append(tf)
    return info


def _describe(tf: TileFile) -> None:
    from .reader import band_names, read_tile

    try:
        tf.bands = band_names(tf.local_path, tf.datakind)
        if tf.bands:
            t = read_tile(tf.local_path, tf.datakind, [tf.bands[0]])
            tf.dtype, tf.shape = str(t.data.dtype), (len(tf.bands),) + t.data.shape[1:]
    except CorruptTileError as exc:
        tf.error = f"corrupt: {exc.message}"


def require_local(info: TileInfo, modalities: Sequence[str] = ()) -> list[TileFile]:
    """The tile's local files; TileNotLocalError with the exact download command if none."""
    local = [f for f in info.files if f.local]
    if local:
        return local
    if not info.files:
        raise TileNotFoundError(
            f"tile {info.tile_id} has no {', '.join(modalities)} file in the {info.region} "
            "manifest",
            f"`m3leo info {info.tile_id}` lists the modalities it has",
        )
    raise TileNotLocalError(
        f"tile {info.tile_id} ({info.region}) is not downloaded yet",
        f"run `{info.download_command(modalities)}`",
    )
