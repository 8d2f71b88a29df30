"""spec: everything m3leo knows about M3LEO itself, in one table (the foundation's base).

Regions, editions (``regions``), datakinds (folder names on the Hub), their file formats, band
and variable names, grids, dtypes and the names users may type for them (``datakinds``). Facts
come from the published dataset (see docs/format.md); where the real value is unknown the entry
says so and the synthetic source treats it as a setting. Imports nothing but ``errors``;
``from m3leo_cli import spec`` then ``spec.FAMILIES`` is the way to use it.
"""

from __future__ import annotations

from .datakinds import (
    ALIASES,
    BIOMASS_VARIABLES,
    ESA_WORLDCOVER_CLASSES,
    ESAWC_BANDS,
    FAMILIES,
    GHSBUILTS_BANDS,
    GSSIC_DELTADAYS,
    GSSIC_FEATURES,
    GSSIC_PARAMS,
    GSSIC_POLARIMETRY,
    GSSIC_SEASONS,
    GSSIC_VARIABLES,
    GUNW_GROUP,
    GUNW_PERIODS,
    GUNW_VARIABLES,
    MODIS_BANDS,
    MODIS_WATER,
    REGION_GUNW,
    S1GRD_BANDS,
    S2RGBM_BANDS,
    S2SRM_BANDS,
    SRTM_BANDS,
    Datakind,
    Family,
    expected_datakinds,
    matches_modality,
    parse_datakind,
    resolve_modality,
)
from .regions import (
    DEFAULT_EDITION,
    EDITIONS,
    REGIONS,
    SPLITS,
    Edition,
    Region,
    get_edition,
    get_region,
)

__all__ = [
    "ALIASES",
    "BIOMASS_VARIABLES",
    "DEFAULT_EDITION",
    "Datakind",
    "EDITIONS",
    "ESAWC_BANDS",
    "ESA_WORLDCOVER_CLASSES",
    "Edition",
    "FAMILIES",
    "Family",
    "GHSBUILTS_BANDS",
    "GSSIC_DELTADAYS",
    "GSSIC_FEATURES",
    "GSSIC_PARAMS",
    "GSSIC_POLARIMETRY",
    "GSSIC_SEASONS",
    "GSSIC_VARIABLES",
    "GUNW_GROUP",
    "GUNW_PERIODS",
    "GUNW_VARIABLES",
    "MODIS_BANDS",
    "MODIS_WATER",
    "REGIONS",
    "REGION_GUNW",
    "Region",
    "S1GRD_BANDS",
    "S2RGBM_BANDS",
    "S2SRM_BANDS",
    "SPLITS",
    "SRTM_BANDS",
    "expected_datakinds",
    "get_edition",
    "get_region",
    "matches_modality",
    "parse_datakind",
    "resolve_modality",
]
