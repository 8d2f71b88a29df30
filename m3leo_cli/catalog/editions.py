"""Which edition a command means when ``--edition`` is not given, and the other edition's hint.

One story for every command: the documented default is ``full``; when the store holds the
manifests of one published edition only (for the regions asked about, or any region), that
edition is meant. Your own region names mean the ``local`` edition. An answer that finds
nothing (no manifest, an empty selection, ``local 0``, every file ``[remote]``) names the
other edition when the store holds its data. A store folder that does not exist is said so,
never answered with "run catalog refresh" (which would start a second store at a typo).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .. import spec
from ..config import Settings
from ..errors import ManifestNotFoundError
from ..store.layout import Store

PUBLISHED = tuple(spec.EDITIONS)  # full, miniset


def _published_regions(regions: Sequence[str]) -> list[str]:
    names = [r.strip().lower() for r in regions]
    return [r for r in names if r in spec.REGIONS] or list(spec.REGIONS)


def editions_in_store(settings: Settings, regions: Sequence[str] = ()) -> list[str]:
    """The published editions whose manifest the store holds for any of ``regions`` (all
    regions when none are named), in the order of ``spec.EDITIONS``."""
    store = Store(settings.data_dir)
    wanted = _published_regions(regions)
    return [e for e in PUBLISHED if any(store.manifest_path(e, r).exists() for r in wanted)]


def default_edition(settings: Settings, regions: Sequence[str] = ()) -> tuple[str, str | None]:
    """(edition, why) for a command given no ``--edition``; ``why`` is None when the answer
    is the documented default (``full``) and a sentence when the store decided it."""
    names = [r.strip().lower() for r in regions]
    own = spec.local_regions()
    if names and all(n in own and n not in spec.REGIONS for n in names):
        return spec.LOCAL_EDITION, f"{', '.join(names)} is your own region"
    have = editions_in_store(settings, names)
    if len(have) == 1 and have[0] != spec.DEFAULT_EDITION:
        where = f" for {', '.join(names)}" if names else ""
        return have[0], f"the store holds only {have[0]} manifests{where}"
    return spec.DEFAULT_EDITION, None


def _has_files(folder: Path, budget: int = 2000) -> bool:
    """Whether ``folder`` holds any file, looking at no more than ``budget`` entries."""
    stack = [folder]
    while stack and budget > 0:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    budget -= 1
                    if entry.is_file(follow_symlinks=False):
                        return True
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    if budget <= 0:
                        break
        except OSError:
            continue
    return False


def other_edition_with_data(
    settings: Settings, edition: str, regions: Sequence[str] = ()
) -> str | None:
    """The other published edition when the store holds its manifest and files for any of
    ``regions`` (all when none are named); None otherwise."""
    store = Store(settings.data_dir)
    wanted = _published_regions(regions)
    for other in PUBLISHED:
        if other == edition:
            continue
        for r in wanted:
            if store.manifest_path(other, r).exists() and _has_files(store.region_dir(other, r)):
                return other
    return None


def other_edition_hint(settings: Settings, edition: str, regions: Sequence[str] = ()) -> str:
    """``--edition X`` advice when the other edition has the data here, else ""."""
    other = other_edition_with_data(settings, edition, regions)
    if other is None:
        return ""
    return f"the store holds {other} tiles: add --edition {other}"


def _nearby(folder: Path, limit: int = 3) -> list[str]:
    """Existing folders beside ``folder`` whose names look like its name (a typo's target)."""
    import difflib

    parent = folder.parent
    try:
        with os.scandir(parent) as it:
            names = sorted(e.name for e in it if e.is_dir() and e.name[:1] != ".")
    except OSError:
        return []
    close = difflib.get_close_matches(folder.name, names, n=limit, cutoff=0.6)
    return [str(parent / n) for n in close]


def missing_store_error(settings: Settings) -> ManifestNotFoundError | None:
    """The error for a data dir that does not exist (None when it does)."""
    root = Path(settings.data_dir)
    if root.is_dir():
        return None
    near = _nearby(root)
    via = settings.source_of("data_dir")
    hint = "check --data-dir (or M3LEO_DATA_DIR)"
    if near:
        hint += "; did you mean " + " or ".join(near) + "?"
    else:
        hint += "; `m3leo catalog refresh --data-dir DIR` starts a new store there"
    err = ManifestNotFoundError(f"the data dir {root} does not exist (from {via})", hint)
    if via == "command line":
        err.exit_code = 2  # a folder typed in this command (a typo): a usage error
    return err


def manifest_not_found(
    settings: Settings, edition: str, regions: Sequence[str], missing: Sequence[str]
) -> ManifestNotFoundError:
    """Why a command found no manifest, with the fix that works from here: the data dir is a
    typo, the other edition is what the store holds, or a refresh is needed."""
    store_error = missing_store_error(settings)
    if store_error is not None:
        return store_error
    store = Store(settings.data_dir)
    names = ", ".join(missing) or "any region"
    message = f"no {edition} manifest for {names} in {store.manifest_root}"
    others = [e for e in editions_in_store(settings, missing) if e != edition]
    if others and edition in PUBLISHED:
        return ManifestNotFoundError(
            message,
            f"the store holds {others[0]} manifests: add --edition {others[0]}, or run "
            f"`m3leo catalog refresh --edition {edition}"
            + "".join(f" --region {r}" for r in regions)
            + "` to get the other edition's",
        )
    return ManifestNotFoundError(
        message,
        f"run `m3leo catalog refresh --edition {edition}"
        + "".join(f" --region {r}" for r in regions)
        + "` (needs the network or a mirror via HF_ENDPOINT)",
    )
