"""The six regions (partition hashes, split-file tags) and the two editions."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import SelectionError, UnknownEditionError, UnknownRegionError

# --------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class Region:
    name: str
    partition_hash: str
    split_tag: str
    total_chips: int  # full-edition AOI size (GCS table, Feb 2024)
    description: str
    centre: tuple[float, float]  # (lon, lat), used by the synthetic source only

    @property
    def partition(self) -> str:
        """Name of the partition folder, e.g. ``europe_partitions_aschips_2f8bd3f01ddd5``."""
        return f"{self.name}_partitions_aschips_{self.partition_hash}"

    @property
    def split_angle(self) -> float:
        """Stripe angle in radians encoded in the split tag (``angle09`` -> 0.9)."""
        m = re.search(r"angle(\d+)", self.split_tag)
        return int(m.group(1)) / 10 if m else 0.0

    def split_csv(self, edition: str) -> str:
        """Repo path of the split CSV of ``edition`` (miniset or full)."""
        if edition == "miniset":
            return f"{self.partition}{self.split_tag}_miniset.csv"
        return f"{self.partition}{self.split_tag}.csv"

    def parquet_csv(self) -> str:
        """Repo path of the full edition's tile -> shard map."""
        return f"{self.partition}{self.split_tag}_parquet.csv"

    def geojson(self, edition: str = "miniset") -> str:
        """Repo path of the GeoJSON (miniset; the full edition publishes none; local: the
        grid's own ``<partition>.geojson``)."""
        if edition == LOCAL_EDITION:
            return f"{self.partition}.geojson"
        return f"{self.partition}_miniset.geojson"


REGIONS: dict[str, Region] = {
    r.name: r
    for r in (
        Region(
            "china",
            "23489d30a312b",
            "_splits_60bands_angle15_60-20-20",
            285_402,
            "China",
            (113.0, 30.0),
        ),
        Region(
            "conus",
            "293d95e3ee589",
            "_splits_60bands_angle09_60-20-20",
            167_406,
            "Contiguous United States",
            (-98.0, 39.0),
        ),
        Region(
            "europe",
            "2f8bd3f01ddd5",
            "_splits_60bands_angle09_60-20-20",
            200_489,
            "Europe",
            (10.0, 50.0),
        ),
        Region(
            "middleeast",
            "0a596e5469add",
            "_splits_60bands_angle15_60-20-20",
            163_986,
            "Middle East",
            (45.0, 30.0),
        ),
        Region(
            "pakin",
            "0f26dc7030c75",
            "_splits_60bands_angle15_60-20-20",
            147_791,
            "Pakistan and India",
            (74.0, 27.0),
        ),
        Region(
            "southamerica",
            "3219aa0f411c2",
            "_splits_60bands_angle02_60-20-20",
            83_756,
            "South America",
            (-60.0, -15.0),
        ),
    )
}

SPLITS = ("train", "val", "test")

# --------------------------------------------------------------------------- editions


@dataclass(frozen=True)
class Edition:
    name: str
    org: str
    packing: str  # "files": one file per tile; "parquet": zstd shards of raw file bytes
    description: str

    def repo_id(self, region: str) -> str:
        if self.name == LOCAL_EDITION:
            raise SelectionError(
                "the local edition is your own regions, not on the Hub: "
                "nothing to download or refresh",
                "local regions are made by `m3leo grid`, `m3leo ingest` and `m3leo gee`",
            )
        return f"{self.org}/{region}"


EDITIONS: dict[str, Edition] = {
    "full": Edition("full", "M3LEO", "parquet", "the whole dataset as zstd Parquet shards"),
    "miniset": Edition(
        "miniset", "M3LEO-miniset", "files", "about 5,000 tiles per region as plain files"
    ),
}
DEFAULT_EDITION = "full"

# Your own regions (`m3leo grid`) live in the store as the "local" edition. It is not in
# EDITIONS (which are the published ones); its regions are registered from the store by
# config.load_settings, and only this edition accepts their names.
LOCAL_EDITION = "local"
LOCAL = Edition(LOCAL_EDITION, "", "files", "your own regions, made with m3leo grid")
_LOCAL_REGIONS: dict[str, Region] = {}


def set_local_regions(regions: list[Region]) -> None:
    """Replace the registry of local regions (what the store's data dir holds)."""
    _LOCAL_REGIONS.clear()
    _LOCAL_REGIONS.update({r.name: r for r in regions})


def local_regions() -> dict[str, Region]:
    return dict(_LOCAL_REGIONS)


def region_names(edition: str | None = None) -> tuple[str, ...]:
    """Every region name of ``edition`` (the local ones for ``local``, else the six)."""
    if edition is not None and edition.lower() == LOCAL_EDITION:
        return tuple(sorted(_LOCAL_REGIONS))
    return tuple(REGIONS)


def resolve_regions(names: Sequence[str] | None, edition: str | None = None) -> list[str]:
    """The named regions checked and normalised (every region of ``edition`` when none)."""
    return [get_region(r, edition).name for r in (names or region_names(edition))]


def close_matches(word: str, choices: list[str]) -> list[str]:
    return difflib.get_close_matches(word.lower(), choices, n=4, cutoff=0.5)


def get_region(name: str, edition: str | None = None) -> Region:
    """A published region, or (only when ``edition`` is ``local``) one of your own."""
    if edition is not None and edition.lower() == LOCAL_EDITION:
        try:
            return _LOCAL_REGIONS[name.lower()]
        except KeyError:
            known = ", ".join(sorted(_LOCAL_REGIONS)) or "none yet"
            raise SelectionError(
                f"no local region {name!r} (local regions: {known})",
                f"make it with `m3leo grid {name.lower()} --aoi FILE` or pick a listed one",
            ) from None
    try:
        return REGIONS[name.lower()]
    except KeyError:
        raise UnknownRegionError(name, close_matches(name, list(REGIONS))) from None


def get_edition(name: str) -> Edition:
    if name.lower() == LOCAL_EDITION:
        return LOCAL
    try:
        return EDITIONS[name.lower()]
    except KeyError:
        raise UnknownEditionError(name, [*EDITIONS, LOCAL_EDITION]) from None
