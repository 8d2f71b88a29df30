"""Which repos a folder serves: the Hub layout, or an m3leo store served for what it holds.

A folder in the Hub layout (``DIR/<org>/<name>/``, what ``hf download --local-dir`` or
``m3leo synth`` writes) is served as it is. An m3leo store keeps its data differently, and a
mirror of it must serve only what it really has:

- ``<data dir>/miniset/<region>/`` holds the miniset's own files: served as
  ``M3LEO-miniset/<region>`` (files still being downloaded, ``*.part``, left out);
- ``<data dir>/full/<region>/`` holds the full edition **unpacked** into one file per tile,
  which is not what the Hub's ``M3LEO/<region>`` repo is (Parquet shards). The full edition is
  served only from whole shards the store kept (``m3leo download --keep-shards``, under
  ``<data dir>/.m3leo/shards/<region>/``), with the region's split CSV and ``_parquet.csv``;
  a region without kept shards is not served, and the start-up lines say why.

``Layout.warnings`` catches the usual slip of serving one folder too deep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..spec import EDITIONS, REGIONS
from .index import SKIP_DIRS, Source, valid_repo_part

# <data dir>/<edition>/ -> the Hub org that publishes it, and back
_ORG_OF_DIR = {e.name: e.org for e in EDITIONS.values()}
_DIR_OF_ORG = {e.org: e.name for e in EDITIONS.values()}
_FULL_ORG = EDITIONS["full"].org
_IN_FLIGHT = (".part", ".ranges")  # a download's partial files (a shard fetched by ranges too)


def _not_in_flight(path: str) -> bool:
    return not path.endswith(_IN_FLIGHT)


def _region_file(path: str) -> bool:
    """The full edition's top-level files (split CSV, ``_parquet.csv``), not unpacked tiles."""
    return "/" not in path and _not_in_flight(path)


def _shard(path: str) -> bool:
    return path.endswith(".parquet")


def _has_shard(folder: Path) -> bool:
    for _, dirs, files in os.walk(folder):
        if any(_shard(f) for f in files):
            return True
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return False


@dataclass(frozen=True)
class Layout:
    """How ``root`` maps onto repos."""

    root: Path

    @property
    def is_store(self) -> bool:
        """An m3leo store (``m3leo download`` keeps its state in ``.m3leo/`` beside the data)."""
        return (self.root / ".m3leo").is_dir()

    def sources(self, org: str, name: str) -> list[Source] | None:
        """The folders that make up repo ``org/name``; None if this mirror does not have it."""
        if not (valid_repo_part(org) and valid_repo_part(name)):
            return None
        plain = org not in _ORG_OF_DIR and (org in _DIR_OF_ORG or not self.is_store)
        if plain and (self.root / org / name).is_dir():  # the Hub layout: <org>/<name>/
            return [Source(self.root / org / name)]
        edition_dir = _DIR_OF_ORG.get(org)
        folder = self.root / edition_dir / name if edition_dir else None
        if folder is None or not folder.is_dir():
            return None
        if org != _FULL_ORG:
            return [Source(folder, _not_in_flight)]
        shards = self.root / ".m3leo" / "shards" / name
        if not _has_shard(shards):
            return None
        return [Source(folder, _region_file), Source(shards, _shard)]

    def candidates(self) -> list[tuple[str, str]]:
        """Every ``(org, name)`` a folder under root could serve (checked by :meth:`sources`)."""
        out = set()
        for top in _listdir(self.root):
            if not valid_repo_part(top) or top in SKIP_DIRS or not (self.root / top).is_dir():
                continue
            if self.is_store and top not in _ORG_OF_DIR and top not in _DIR_OF_ORG:
                continue  # a store's own folders (local regions, exports) are not Hub repos
            org = _ORG_OF_DIR.get(top, top)
            for name in _listdir(self.root / top):
                if valid_repo_part(name) and (self.root / top / name).is_dir():
                    out.add((org, name))
        return sorted(out)

    def missing(self, org: str, name: str) -> str:
        """The X-Error-Message of a 404 for a repo this mirror does not have."""
        repo_id = f"{org}/{name}"
        if org == _FULL_ORG and valid_repo_part(name) and (self.root / "full" / name).is_dir():
            return (
                f"this mirror has no {repo_id}: its store holds the full edition of {name} "
                "unpacked, not as shards (serve a store whose shards were kept: "
                "`m3leo download --keep-shards`)"
            )
        return f"this mirror has no {repo_id}"

    def not_served(self) -> list[str]:
        """Folders that look like data but are not served, with the reason (for the start)."""
        out = []
        full = self.root / "full"
        for name in _listdir(full):
            if name in REGIONS and (full / name).is_dir() and self.sources(_FULL_ORG, name) is None:
                out.append(
                    f"{full / name}: the full edition of {name}, unpacked, with no kept "
                    f"shards: not served as {_FULL_ORG}/{name} (the Hub's repo is the shards; "
                    "`m3leo download --keep-shards` keeps them)"
                )
        return out

    def warnings(self, served: list[str]) -> list[str]:
        """A folder served one or two levels too deep: say which folder to serve instead."""
        root = self.root.resolve()
        example = f" (they are named like {served[0]})" if served else ""
        cases = [(root, "one level", f"the {root.name} folder itself")]
        if root.name in REGIONS:
            cases.append((root.parent, "two levels", f"region {root.name} of {root.parent.name}"))
        for folder, depth, what in cases:
            if folder.name in _DIR_OF_ORG or (
                folder.name in _ORG_OF_DIR and (folder.parent / ".m3leo").is_dir()
            ):
                org = _ORG_OF_DIR.get(folder.name, folder.name)
                return [
                    f"serving {root} {depth} too deep (it is {what}): clients will not find "
                    f"{org}/<region>{example}; serve the folder above it instead: "
                    f"m3leo serve {folder.parent}"
                ]
        if not served:
            return [f"{root} holds no <org>/<name>/ repo folder: nothing is served"]
        regions = sorted({r.split("/", 1)[0] for r in served} & set(REGIONS))
        if regions:
            return [
                f"{root} holds region folders ({', '.join(regions)}) at its top: serve the "
                "folder that holds M3LEO-miniset/ and M3LEO/ (or a store's miniset/ and full/)"
            ]
        return []

    def editions(self, served: list[str]) -> dict[str, list[str]]:
        """Edition name -> the regions served of it (M3LEO repos only)."""
        out: dict[str, list[str]] = {}
        for repo_id in served:
            org, _, name = repo_id.partition("/")
            edition = _DIR_OF_ORG.get(org)
            if edition is not None:
                out.setdefault(edition, []).append(name)
        return out


def _listdir(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []
