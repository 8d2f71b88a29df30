"""Datakinds: folder names on the Hub, their families, formats, bands, variables and aliases."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UnknownModalityError
from .regions import REGIONS, close_matches, get_edition, get_region

# --------------------------------------------------------------------------- datakinds

S1GRD_BANDS = tuple(
    f"{season}_{pol}{orbit}"
    for season in ("winter", "spring", "summer", "fall")
    for pol in ("vv", "vh")
    for orbit in ("asc", "des")
)
S2RGBM_BANDS = tuple(f"{m:02d}_{c}" for m in range(1, 13) for c in ("red", "green", "blue"))
# s2srm's band list is unknown [U]; this guess follows geetiles' s2 definition.
S2SRM_BANDS = tuple(
    f"{season}_{b}"
    for season in ("winter", "spring", "summer", "fall")
    for b in ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
)
MODIS_BANDS = tuple(f"Percent_Tree_Cover_{y}" for y in range(2016, 2021))
SRTM_BANDS = ("elevation", "slope")
ESAWC_BANDS = ("Map",)
GHSBUILTS_BANDS = ("built_surface",)  # band name [U]

GSSIC_SEASONS = ("winter", "spring", "summer", "fall")
GSSIC_POLARIMETRY = ("vv", "vh")
GSSIC_DELTADAYS = (12, 24, 36, 48)
GSSIC_PARAMS = ("rho", "tau", "rmse")
GSSIC_FEATURES = ("inc", "lsmap")
# variable -> (label dimension, labels); every variable is (season, <label dim>, y, x) except
# geometry, which is (feature, y, x).
GSSIC_VARIABLES: dict[str, tuple[str, tuple[object, ...]]] = {
    "amplitude": ("polarimetry", GSSIC_POLARIMETRY),
    "coherence": ("deltadays", GSSIC_DELTADAYS),
    "decaymodel": ("param", GSSIC_PARAMS),
    "geometry": ("feature", GSSIC_FEATURES),
}
GUNW_GROUP = "science/grids/data"
GUNW_VARIABLES = ("unwrappedPhase", "coherence", "amplitude")
BIOMASS_VARIABLES = ("agb", "agb_se")

ESA_WORLDCOVER_CLASSES: dict[int, tuple[str, str]] = {
    # code: (name, official colour)
    10: ("Tree cover", "#006400"),
    20: ("Shrubland", "#ffbb22"),
    30: ("Grassland", "#ffff4c"),
    40: ("Cropland", "#f096ff"),
    50: ("Built-up", "#fa0000"),
    60: ("Bare / sparse vegetation", "#b4b4b4"),
    70: ("Snow and ice", "#f0f0f0"),
    80: ("Permanent water bodies", "#0064c8"),
    90: ("Herbaceous wetland", "#0096a0"),
    95: ("Mangroves", "#00cf75"),
    100: ("Moss and lichen", "#fae6a0"),
}
MODIS_WATER = 200


@dataclass(frozen=True)
class Family:
    """A modality family: what a datakind is, whatever its year or period."""

    name: str  # datakind without its year, e.g. "s1grd"; "gunw" for every gunw_* period
    ext: str  # "tif" or "nc"
    grid: str  # "chip": 448x448 at 10 m; "native": ~48x60 at ~90-100 m
    dtype: str  # best evidence; readers always take the dtype from the file
    bands: tuple[str, ...] = ()  # GeoTIFF band descriptions, in order
    variables: tuple[str, ...] = ()  # netCDF variables
    resolution_m: float = 10.0
    label: bool = False  # a label layer (nearest-neighbour resampling, class histograms)
    aliases: tuple[str, ...] = ()
    description: str = ""
    group: str | None = None  # netCDF group holding the variables
    years: tuple[int, ...] = field(default=())

    @property
    def format(self) -> str:
        return "geotiff" if self.ext == "tif" else "netcdf"


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "s1grd",
            "tif",
            "chip",
            "uint16",
            bands=S1GRD_BANDS,
            aliases=("amplitude", "polarimetry", "sar"),
            description="Sentinel-1 GRD seasonal mean, VV/VH, ascending/descending "
            "(uint16 holding signed dB)",
            years=(2018, 2019, 2020),
        ),
        Family(
            "s2rgbm",
            "tif",
            "chip",
            "uint8",
            bands=S2RGBM_BANDS,
            aliases=("rgb", "optical"),
            description="Sentinel-2 RGB monthly median composites (uint8 0-255)",
            years=(2020,),
        ),
        Family(
            "s2srm",
            "tif",
            "chip",
            "uint8",
            bands=S2SRM_BANDS,
            description="Sentinel-2 L2A surface reflectance (band list unknown: configurable)",
            years=(2018, 2019, 2020),
        ),
        Family(
            "gssic",
            "nc",
            "native",
            "float32",
            variables=tuple(GSSIC_VARIABLES),
            resolution_m=90.0,
            aliases=("coherence",),
            description="Global Seasonal Sentinel-1 Interferometric Coherence and Backscatter",
        ),
        Family(
            "gunw",
            "nc",
            "native",
            "float32",
            variables=GUNW_VARIABLES,
            resolution_m=90.0,
            aliases=("interferometry", "interferogram", "insar"),
            group=GUNW_GROUP,
            description="ARIA Sentinel-1 geocoded unwrapped interferograms (by date pair)",
        ),
        Family(
            "esaworldcover",
            "tif",
            "chip",
            "uint8",
            bands=ESAWC_BANDS,
            label=True,
            aliases=("landcover",),
            description="ESA WorldCover land-cover classes",
            years=(2020,),
        ),
        Family(
            "biomass",
            "nc",
            "native",
            "float32",
            variables=BIOMASS_VARIABLES,
            resolution_m=100.0,
            label=True,
            aliases=("agb",),
            description="ESA CCI above-ground biomass and its standard error",
            years=(2018, 2019, 2020),
        ),
        Family(
            "ghsbuilts",
            "tif",
            "native",
            "uint16",
            bands=GHSBUILTS_BANDS,
            resolution_m=100.0,
            label=True,
            aliases=("builtup",),
            description="GHSL built-up surface",
            years=(2020,),
        ),
        Family(
            "modis44b006veg",
            "tif",
            "chip",
            "uint8",
            bands=MODIS_BANDS,
            label=True,
            aliases=("treecover", "modis"),
            description="MODIS MOD44B percent tree cover 2016-2020 (200 = water)",
        ),
        Family(
            "srtmdem",
            "tif",
            "chip",
            "uint16",
            bands=SRTM_BANDS,
            label=True,
            aliases=("dem", "elevation"),
            description="SRTM elevation and slope",
        ),
    )
}

ALIASES: dict[str, str] = {a: f.name for f in FAMILIES.values() for a in f.aliases}

_YEAR_RE = re.compile(r"^(?P<family>[a-z0-9]+)-(?P<year>\d{4})$")
_GUNW_RE = re.compile(r"^gunw_(?P<start>\d{4}-\d{2}-\d{2})_(?P<end>\d{4}-\d{2}-\d{2})$")

GUNW_PERIODS = (
    "gunw_2020-01-01_2020-03-31",
    "gunw_2020-04-01_2020-06-30",
    "gunw_2020-07-01_2020-09-30",
    "gunw_2020-08-01_2020-10-31",
)
# Which GUNW periods each region has (miniset READMEs and GCS table; europe has none).
REGION_GUNW: dict[str, tuple[str, ...]] = {
    "conus": GUNW_PERIODS,
    "southamerica": GUNW_PERIODS[:2],
    "pakin": GUNW_PERIODS[:2],
    "middleeast": GUNW_PERIODS[:2],
    "china": GUNW_PERIODS[:1],
    "europe": (),
}
_COMMON = (
    "s1grd-2020",
    "s2rgbm-2020",
    "gssic",
    "esaworldcover-2020",
    "biomass-2020",
    "ghsbuilts-2020",
    "modis44b006veg",
    "srtmdem",
)
_FULL_ONLY = ("s1grd-2018", "s1grd-2019", "s2srm-2018", "s2srm-2019", "s2srm-2020")


def expected_datakinds(edition: str, region: str) -> tuple[str, ...]:
    """Datakind folders the published repo of ``edition``/``region`` is known or expected to hold.

    The manifest (built from the real listing) is the truth at run time; this table drives the
    synthetic source and the "this region has no such datakind" explanations.
    """
    get_edition(edition)
    get_region(region)
    kinds = list(_COMMON) + list(REGION_GUNW[region])
    if edition == "full":
        kinds += list(_FULL_ONLY)
    return tuple(sorted(kinds))


@dataclass(frozen=True)
class Datakind:
    """A folder of tiles on the Hub: a family plus a year or a period."""

    name: str
    family: Family
    year: int | None
    period: tuple[str, str] | None = None

    @property
    def ext(self) -> str:
        return self.family.ext


# Datakinds of your own (`m3leo ingest`, `m3leo gee` user recipes), registered from the store
# by config.load_settings. Their names never parse as a published datakind (ingest refuses).
_LOCAL_FAMILIES: dict[str, Family] = {}


def set_local_datakinds(families: list[Family]) -> None:
    """Replace the registry of local datakinds (each is its own family, GeoTIFF on the chip)."""
    _LOCAL_FAMILIES.clear()
    _LOCAL_FAMILIES.update({f.name: f for f in families})


def local_datakinds() -> dict[str, Family]:
    return dict(_LOCAL_FAMILIES)


def is_published_name(name: str) -> bool:
    """True when ``name`` is a published datakind, family or alias (a local one may not be)."""
    n = name.lower()
    if n in FAMILIES or n in ALIASES or _GUNW_RE.match(n):
        return True
    m = _YEAR_RE.match(n)
    return bool(m and m.group("family") in FAMILIES)


def parse_datakind(name: str) -> Datakind:
    """Split a datakind folder name into its family, year and (for GUNW) period."""
    if name in _LOCAL_FAMILIES and not is_published_name(name):
        return Datakind(name, _LOCAL_FAMILIES[name], None)
    if name in FAMILIES:
        return Datakind(name, FAMILIES[name], None)
    m = _GUNW_RE.match(name)
    if m:
        start, end = m.group("start"), m.group("end")
        return Datakind(name, FAMILIES["gunw"], int(start[:4]), (start, end))
    m = _YEAR_RE.match(name)
    if m and m.group("family") in FAMILIES:
        return Datakind(name, FAMILIES[m.group("family")], int(m.group("year")))
    raise UnknownModalityError(name, close_matches(name, _all_names()))


# --------------------------------------------------------------------------- user-typed names


def _all_names() -> list[str]:
    names = set(FAMILIES) | set(ALIASES)
    for region in REGIONS:
        names.update(expected_datakinds("full", region))
    return sorted(names)


def resolve_modality(token: str) -> tuple[str, str | None]:
    """Turn a name a user typed into ``(family, datakind or None)``.

    ``gssic`` and ``s1grd-2020`` name a datakind; ``s1grd`` and every alias name a family
    (all its years or periods). Raises UnknownModalityError with close matches.
    """
    t = token.strip().lower()
    if t in _LOCAL_FAMILIES and not is_published_name(t):
        return t, t
    if t in ALIASES:
        return ALIASES[t], None
    if t in FAMILIES:
        return t, (t if not FAMILIES[t].years and t != "gunw" else None)
    dk = parse_datakind(t)  # raises with close matches
    return dk.family.name, dk.name


def matches_modality(token: str, datakind: str) -> bool:
    """True when the datakind folder ``datakind`` is what ``token`` asks for."""
    family, exact = resolve_modality(token)
    if exact is not None:
        return datakind == exact
    try:
        return parse_datakind(datakind).family.name == family
    except UnknownModalityError:
        return False
