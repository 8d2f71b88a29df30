from __future__ import annotations

import pytest

from m3leo_cli import spec
from m3leo_cli.errors import UnknownModalityError, UnknownRegionError


def test_regions_carry_the_published_partition_names() -> None:
    assert set(spec.REGIONS) == {"china", "conus", "europe", "middleeast", "pakin", "southamerica"}
    eu = spec.REGIONS["europe"]
    assert eu.partition == "europe_partitions_aschips_2f8bd3f01ddd5"
    assert eu.split_csv("miniset") == (
        "europe_partitions_aschips_2f8bd3f01ddd5_splits_60bands_angle09_60-20-20_miniset.csv"
    )
    assert eu.split_csv("full") == (
        "europe_partitions_aschips_2f8bd3f01ddd5_splits_60bands_angle09_60-20-20.csv"
    )
    assert eu.parquet_csv().endswith("_60-20-20_parquet.csv")
    assert eu.geojson() == "europe_partitions_aschips_2f8bd3f01ddd5_miniset.geojson"
    assert spec.REGIONS["southamerica"].split_angle == pytest.approx(0.2)


def test_editions_map_to_the_hub_orgs() -> None:
    assert spec.EDITIONS["full"].repo_id("pakin") == "M3LEO/pakin"
    assert spec.EDITIONS["miniset"].repo_id("pakin") == "M3LEO-miniset/pakin"


def test_band_tables_follow_the_loaders() -> None:
    assert spec.S1GRD_BANDS[:4] == ("winter_vvasc", "winter_vvdes", "winter_vhasc", "winter_vhdes")
    assert spec.S1GRD_BANDS[-1] == "fall_vhdes" and len(spec.S1GRD_BANDS) == 16
    assert (
        spec.S2RGBM_BANDS[:3] == ("01_red", "01_green", "01_blue") and len(spec.S2RGBM_BANDS) == 36
    )
    assert spec.MODIS_BANDS == tuple(f"Percent_Tree_Cover_{y}" for y in range(2016, 2021))


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("gssic", ("gssic", "gssic")),
        ("coherence", ("gssic", None)),
        ("s1grd", ("s1grd", None)),
        ("S1GRD-2020", ("s1grd", "s1grd-2020")),
        ("amplitude", ("s1grd", None)),
        ("interferometry", ("gunw", None)),
        ("gunw_2020-01-01_2020-03-31", ("gunw", "gunw_2020-01-01_2020-03-31")),
        ("rgb", ("s2rgbm", None)),
        ("landcover", ("esaworldcover", None)),
        ("builtup", ("ghsbuilts", None)),
        ("treecover", ("modis44b006veg", None)),
        ("dem", ("srtmdem", None)),
        ("elevation", ("srtmdem", None)),
    ],
)
def test_resolve_modality_names_and_aliases(token: str, expected: tuple[str, str | None]) -> None:
    assert spec.resolve_modality(token) == expected


def test_matches_modality() -> None:
    assert spec.matches_modality("interferometry", "gunw_2020-04-01_2020-06-30")
    assert spec.matches_modality("s1grd", "s1grd-2019")
    assert not spec.matches_modality("s1grd-2020", "s1grd-2019")
    assert not spec.matches_modality("coherence", "s1grd-2020")


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(UnknownModalityError) as exc:
        spec.resolve_modality("coherense")
    assert "coherence" in exc.value.hint
    with pytest.raises(UnknownRegionError) as rexc:
        spec.get_region("eurpe")
    assert "europe" in rexc.value.hint


def test_expected_datakinds_per_region() -> None:
    eu = spec.expected_datakinds("miniset", "europe")
    assert "gssic" in eu and not any(k.startswith("gunw") for k in eu)
    conus = spec.expected_datakinds("full", "conus")
    assert sum(k.startswith("gunw_") for k in conus) == 4
    assert "s2srm-2019" in conus and "s2srm-2019" not in spec.expected_datakinds("miniset", "conus")
    for kind in conus:
        assert spec.parse_datakind(kind).name == kind
