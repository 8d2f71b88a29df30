from __future__ import annotations

from pathlib import Path

import pytest

from m3leo_cli.errors import BadBBoxError, BadTileIdError, SelectionError, UnknownRegionError
from m3leo_cli.selection import build_selection, parse_bbox


def test_build_selection_normalises_and_deduplicates(tmp_path: Path) -> None:
    f = tmp_path / "tiles.txt"
    f.write_text("# my tiles\n020d259a89240\n0127acc7072b4, 020d259a89240\n")
    sel = build_selection(
        edition="miniset",
        regions=["Europe", "europe"],
        modalities=["Coherence", "s1grd"],
        splits=["train"],
        bbox="5,45,6.5,46",
        tiles="0127acc7072b4",
        tiles_file=f,
        limit=3,
    )
    assert sel.regions == ("europe",)
    assert sel.modalities == ("coherence", "s1grd")
    assert sel.bbox == (5.0, 45.0, 6.5, 46.0)
    assert sel.tiles == ("0127acc7072b4", "020d259a89240")
    assert sel.wants_datakind("gssic") and sel.wants_datakind("s1grd-2019")
    assert not sel.wants_datakind("srtmdem")


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "5,45,4,46", "5,95,6,96", "nan,1,2,3"])
def test_malformed_bbox(text: str) -> None:
    with pytest.raises(BadBBoxError) as exc:
        parse_bbox(text)
    assert "W,S,E,N" in exc.value.hint


def test_bad_inputs_raise_selection_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownRegionError):
        build_selection(regions=["atlantis"])
    with pytest.raises(SelectionError):
        build_selection(splits=["validation"])
    with pytest.raises(BadTileIdError):
        build_selection(tiles="not-a-tile")
    bad = tmp_path / "bad.txt"
    bad.write_text("020d259a89240\nZZZ\n")
    with pytest.raises(BadTileIdError) as exc:
        build_selection(tiles_file=bad)
    assert "ZZZ" in exc.value.message
    with pytest.raises(SelectionError):
        build_selection(limit=0)


def test_year_filter() -> None:
    sel = build_selection(modalities=["s1grd"], years=[2019])
    assert sel.wants_datakind("s1grd-2019") and not sel.wants_datakind("s1grd-2020")
    assert sel.region_names == ("china", "conus", "europe", "middleeast", "pakin", "southamerica")
