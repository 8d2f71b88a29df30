"""``m3leo clean``: remove what interrupted runs left behind, and only that.

Stray ``.part`` files of the selection and partial shards in the shard cache (whole cached
shards too, on request). ``verify`` reports the same stray parts without touching them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import spec
from ..config import Settings
from ..fetch.transfer import PART_SUFFIX, VALIDATOR_SUFFIX
from ..store.layout import Store


def stray_parts(
    settings: Settings, edition: str | None = None, regions: Sequence[str] = ()
) -> list[Path]:
    """Every ``*.part`` file under the store's region folders (edition/regions narrow it)."""
    found: list[Path] = []
    for ed in [edition] if edition else list(spec.EDITIONS):
        for reg in regions or list(spec.REGIONS):
            base = Store(settings.data_dir).region_dir(ed, reg)
            if not base.is_dir():
                continue
            for dirpath, _dirs, files in os.walk(base):
                found += [Path(dirpath) / f for f in files if f.endswith(PART_SUFFIX)]
    return sorted(found)


@dataclass
class CleanReport:
    removed: list[str] = field(default_factory=list)  # every path removed (or, dry run, listed)
    bytes: int = 0
    parts: int = 0  # .part files, in the regions and in the shard cache
    shards: int = 0  # whole cached shards (only with ``shards=True``)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def shard_cache_files(
    settings: Settings, regions: Sequence[str] = (), *, whole: bool = False
) -> list[Path]:
    """Files under ``<data_dir>/.m3leo/shards/<region>/``: ``.part`` ones, and whole shards too.

    A partial shard download is only ever resumed by a download of the same shard; a whole one
    is kept by ``--keep-shards`` (or left by a run that stopped before unpacking it).
    """
    base = Store(settings.data_dir).state_dir / "shards"
    found: list[Path] = []
    for reg in regions or list(spec.REGIONS):
        folder = base / reg
        if not folder.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(folder):
            found += [Path(dirpath) / f for f in files if whole or f.endswith(PART_SUFFIX)]
    return sorted(found)


def clean(
    settings: Settings,
    edition: str | None = None,
    regions: Sequence[str] = (),
    *,
    dry_run: bool = False,
    shards: bool = False,
    wait: bool = False,
) -> CleanReport:
    """Remove stray ``.part`` files and, with ``shards``, the cached whole shards.

    Runs under the store lock, so a running download keeps its own parts.
    """
    from ..store.lock import store_lock

    rep = CleanReport()
    store = Store(settings.data_dir)
    if not store.root.is_dir():
        return rep
    with store_lock(store, wait=wait):
        found = stray_parts(settings, edition, regions)
        if edition in (None, "full"):
            found += shard_cache_files(settings, regions, whole=shards)
        for p in found:
            try:
                size = p.stat().st_size
                if not dry_run:
                    p.unlink()
                    # the part's validator sidecar (<name>.part.validator) goes with it
                    p.with_name(p.name + VALIDATOR_SUFFIX[len(PART_SUFFIX) :]).unlink(
                        missing_ok=True
                    )
            except FileNotFoundError:
                continue
            rep.removed.append(str(p))
            rep.bytes += size
            if p.name.endswith(PART_SUFFIX):
                rep.parts += 1
            else:
                rep.shards += 1
    return rep
