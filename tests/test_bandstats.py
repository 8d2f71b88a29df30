"""bandstats against numpy computed directly on the synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from m3leo_cli import spec
from m3leo_cli.config import load_settings
from m3leo_cli.errors import CorruptTileError, StatsNotFoundError
from m3leo_cli.selection import Selection
from m3leo_cli.testing.synth import RepoInfo, SynthConfig, write_source
from m3leo_cli.tiles.bandstats import BandStats, BandStatsReport, compute_band_stats
from m3leo_cli.tiles.reader import decode, read_tile
from m3leo_cli.tiles.statsfile import load_band_stats, normalization, save_band_stats, stats_path

GUNW = "gunw_2020-01-01_2020-03-31"
PCTS = (0.0, 2.0, 37.5, 50.0, 98.0, 100.0)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> RepoInfo:
    root = tmp_path_factory.mktemp("src")
    cfg = SynthConfig(regions=("conus",), editions=("miniset",), tiles=6, gunw_datepairs=3)
    return write_source(root, cfg).repo("miniset", "conus")


def all_files(repo: RepoInfo) -> list[tuple[str, Path]]:
    return [(dk, repo.root / fi.path) for (dk, _), fi in sorted(repo.tile_files.items())]


@pytest.fixture(scope="module")
def stats(repo: RepoInfo) -> dict[tuple[str, str], BandStats]:
    res = compute_band_stats(all_files(repo), percentiles=PCTS, workers=2, executor="thread")
    return {(b.modality, b.band): b for b in res}


def reference(repo: RepoInfo, datakind: str, band: str) -> np.ndarray:
    """Every valid decoded value of one band over all files, computed the plain way."""
    values = []
    for dk, path in all_files(repo):
        if dk != datakind:
            continue
        tile = read_tile(path, dk)
        d = decode(tile)
        for i, name in enumerate(tile.band_names):
            if name == band or name.split(":")[0] == band and dk.startswith("gunw"):
                values.append(d[i][~np.isnan(d[i])].astype(np.float64))
    return np.concatenate(values)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


CASES = [
    ("s1grd-2020", "winter_vvasc"),
    ("s1grd-2020", "fall_vhdes"),
    ("s2rgbm-2020", "07_green"),
    ("srtmdem", "elevation"),
    ("esaworldcover-2020", "Map"),
    ("modis44b006veg", "Percent_Tree_Cover_2018"),
    ("ghsbuilts-2020", "built_surface"),
    ("gssic", "coherence:winter:12"),
    ("gssic", "geometry:inc"),
    ("biomass-2020", "agb"),
    (GUNW, "unwrappedPhase"),
    (GUNW, "coherence"),
]


@pytest.mark.parametrize("datakind, band", CASES)
def test_moments_match_numpy(
    repo: RepoInfo, stats: dict[tuple[str, str], BandStats], datakind: str, band: str
) -> None:
    x = reference(repo, datakind, band)
    s = stats[(datakind, band)]
    assert s.count == x.size
    assert s.mean is not None and s.std is not None and s.min is not None and s.max is not None
    assert rel(s.mean, x.mean()) < 1e-6
    assert rel(s.std, x.std()) < 1e-6
    assert s.min == x.min() and s.max == x.max()


@pytest.mark.parametrize("datakind, band", CASES)
def test_percentiles(
    repo: RepoInfo, stats: dict[tuple[str, str], BandStats], datakind: str, band: str
) -> None:
    x = np.sort(reference(repo, datakind, band))
    s = stats[(datakind, band)]
    family = spec.parse_datakind(datakind).family
    for q in PCTS:
        got, want = s.percentiles[f"p{q:g}"], float(np.percentile(x, q))
        assert got is not None
        if family.name in ("gssic", "gunw", "biomass"):  # float: 65,536 bit-pattern bins
            r = q / 100 * (x.size - 1)
            near = max(abs(x[int(np.floor(r))]), abs(x[int(np.ceil(r))]))
            assert abs(got - want) <= 2**-7 * near + 1e-12, (q, got, want)
        else:  # integer codes: exact (up to the float32 of decode)
            assert got == pytest.approx(want, rel=1e-6, abs=1e-12), (q, got, want)


def test_nodata_fraction_and_classes(
    repo: RepoInfo, stats: dict[tuple[str, str], BandStats]
) -> None:
    raw = np.concatenate(
        [read_tile(p, dk).data[0].ravel() for dk, p in all_files(repo) if dk.startswith("esa")]
    )
    wc = stats[("esaworldcover-2020", "Map")]
    assert wc.nodata_fraction == pytest.approx(np.mean(raw == 0))
    assert wc.classes is not None
    counts = {c["code"]: c["count"] for c in wc.classes}
    for code, (name, _colour) in spec.ESA_WORLDCOVER_CLASSES.items():
        assert counts[code] == int(np.sum(raw == code))
        assert any(c["name"] == name for c in wc.classes)
    assert sum(c["fraction"] for c in wc.classes) == pytest.approx(1.0)

    mo_raw = np.concatenate(
        [read_tile(p, dk).data[4].ravel() for dk, p in all_files(repo) if dk.startswith("modis")]
    )
    mo = stats[("modis44b006veg", "Percent_Tree_Cover_2020")]
    assert mo.water_fraction == pytest.approx(np.mean(mo_raw == 200))
    assert mo.count == int(np.sum(mo_raw <= 100))
    assert mo.classes is not None
    water = [c for c in mo.classes if c["name"] == "water"][0]
    assert water["code"] == 200 and water["count"] == int(np.sum(mo_raw == 200))


def test_gunw_pools_datepairs_and_counts_files_once(
    repo: RepoInfo, stats: dict[tuple[str, str], BandStats]
) -> None:
    s = stats[(GUNW, "amplitude")]
    assert s.files == len(repo.coverage[GUNW])
    assert 0 < s.nodata_fraction < 1


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_executors_agree(
    repo: RepoInfo, stats: dict[tuple[str, str], BandStats], executor: str
) -> None:
    files = [f for f in all_files(repo) if f[0] in ("srtmdem", "gssic")]
    res = compute_band_stats(files, percentiles=PCTS, workers=2, executor=executor, batch_size=3)
    for b in res:
        ref = stats[(b.modality, b.band)]
        assert b.count == ref.count and b.percentiles == ref.percentiles
        assert b.mean == pytest.approx(ref.mean, rel=1e-12)
        assert b.std == pytest.approx(ref.std, rel=1e-9)


def test_corrupt_file_stops_with_its_name(repo: RepoInfo, tmp_path: Path) -> None:
    dk, src = all_files(repo)[0]
    bad = tmp_path / src.name
    bad.write_bytes(src.read_bytes()[:100])
    with pytest.raises(CorruptTileError) as exc:
        compute_band_stats([(dk, src), (dk, bad)], workers=2)
    assert str(bad) in exc.value.message


def test_saved_for_export(repo: RepoInfo, stats: dict[tuple[str, str], BandStats]) -> None:
    settings = load_settings()
    with pytest.raises(StatsNotFoundError):
        load_band_stats(settings, "miniset")
    bands = [b for b in stats.values() if b.modality in ("s1grd-2020", GUNW)]
    report = BandStatsReport(bands, files=10, tiles=6, seconds=0.1, edition="miniset",
                             regions=("conus",), percentiles=PCTS)  # fmt: skip
    path, where = save_band_stats(
        settings, report, Selection(edition="miniset", regions=("conus",))
    )
    assert where == "store"
    assert path == stats_path(settings, "miniset")
    assert path.parent == settings.data_dir / ".m3leo" / "stats"
    doc = json.loads(path.read_text())
    assert doc["format"] == "m3leo-band-stats/1"
    entry = doc["modalities"]["s1grd-2020"]
    assert entry["values"] == "decoded" and entry["regions"] == ["conus"]
    mean, std = normalization(settings, "miniset", "s1grd-2020", "winter_vvasc")
    ref = stats[("s1grd-2020", "winter_vvasc")]
    assert (mean, std) == (ref.mean, ref.std)
    # GUNW bands are looked up by variable, whatever the date pair
    assert normalization(settings, "miniset", GUNW, "coherence:20200114_20200102")[0] == (
        stats[(GUNW, "coherence")].mean
    )
    # a later run for another modality keeps the first one
    other = [b for b in stats.values() if b.modality == "srtmdem"]
    save_band_stats(settings, BandStatsReport(other, 6, 6, 0.1, edition="miniset"), Selection())
    assert set(load_band_stats(settings, "miniset")) == {"s1grd-2020", GUNW, "srtmdem"}
    with pytest.raises(StatsNotFoundError):
        normalization(settings, "miniset", "gssic", "geometry:inc")
