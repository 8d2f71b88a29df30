"""Reading an area of interest (WKT, GeoJSON or a bbox) and refusing the ones a grid cannot use.

The AOI is lon/lat degrees (EPSG:4326), polygonal, valid, on one side of the antimeridian and
narrow enough for one UTM zone's projection to stay usable (geetiles projects the whole AOI in
the zone of its centroid). Each refusal says what to do instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import BadAoiError, MissingDependencyError, UsageError
from .ids import utm_zone

# How far (degrees of longitude) an AOI may reach from its zone's central meridian. The
# published regions reach about 32 degrees (conus, china); past ~45 the transverse Mercator
# scale error passes 40% and chips far out are no longer near-square on the ground.
MAX_MERIDIAN_DISTANCE = 45.0


def _shapely() -> Any:
    try:
        import shapely
    except ImportError:
        raise MissingDependencyError("shapely", "aoi") from None
    return shapely


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``W,S,E,N`` in degrees."""
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise BadAoiError(
            f"bad bbox {text!r}", "give --bbox W,S,E,N in degrees, e.g. --bbox 5.7,49.4,6.5,50.2"
        ) from None
    if not all(math.isfinite(v) for v in (w, s, e, n)) or w >= e or s >= n:
        raise BadAoiError(
            f"bbox {text!r} is empty (west must be < east, south < north)",
            "give --bbox W,S,E,N; for an area across 180 degrees grid each side as its own region",
        )
    return w, s, e, n


def _from_geojson(doc: Any, where: str) -> Any:
    shapely = _shapely()
    from shapely.geometry import shape

    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        geoms = [f.get("geometry") for f in doc.get("features") or []]
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        geoms = [doc.get("geometry")]
    else:
        geoms = [doc]
    try:
        shapes = [shape(g) for g in geoms if g]
    except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.GEOSException) as exc:
        raise BadAoiError(f"{where} is not GeoJSON geometry: {exc}") from None
    if not shapes:
        raise BadAoiError(f"{where} holds no geometry")
    return shapes[0] if len(shapes) == 1 else shapely.union_all(shapes)


def load_aoi(aoi: str | None = None, bbox: str | None = None) -> Any:
    """The AOI as a shapely geometry, from a file (.wkt, .geojson/.json), inline WKT or a bbox.

    WKT is read as is, so a grid over it matches one geetiles makes from the same WKT file.
    """
    shapely = _shapely()
    if (aoi is None) == (bbox is None):
        raise BadAoiError("give exactly one of --aoi and --bbox")
    if bbox is not None:
        geom = shapely.box(*parse_bbox(bbox))
    else:
        assert aoi is not None
        text, where = aoi, "--aoi"
        path = Path(aoi)
        if len(aoi) < 4096 and path.is_file():
            text, where = path.read_text(encoding="utf-8"), str(path)
        stripped = text.strip()
        if not stripped:
            raise BadAoiError(f"{where} is empty")
        if stripped.startswith("{"):
            try:
                doc = json.loads(stripped)
            except ValueError as exc:
                raise BadAoiError(f"{where} is not valid JSON: {exc}") from None
            geom = _from_geojson(doc, where)
        else:
            try:
                geom = shapely.from_wkt(stripped)
            except shapely.errors.GEOSException as exc:
                hint = None if path.suffix else "if you meant a file, check its path"
                raise BadAoiError(f"{where} is neither a file nor WKT ({exc})", hint) from None
    check_aoi(geom)
    return geom


def check_aoi(geom: Any) -> None:
    """Refuse an AOI a grid cannot be built on, with what to do instead."""
    shapely = _shapely()
    if geom is not None and not geom.is_empty and not geom.is_valid:
        why = shapely.is_valid_reason(geom)
        raise BadAoiError(
            f"the AOI is not a valid polygon: {why}",
            "repair it first (QGIS 'Fix geometries', or shapely.make_valid) and pass it again",
        )
    polygonal = ("Polygon", "MultiPolygon")
    if geom is None or geom.is_empty or geom.area == 0 or geom.geom_type not in polygonal:
        kind = "empty" if geom is None or geom.is_empty else geom.geom_type
        raise BadAoiError(
            f"the AOI has no area ({kind})", "give a Polygon or MultiPolygon in lon/lat degrees"
        )
    xs, ys = shapely.get_coordinates(geom).T
    if (ys.min() < -90 or ys.max() > 90) and abs(xs).max() <= 90 and abs(ys).max() <= 180:
        raise UsageError(
            f"the AOI has latitudes up to {abs(ys).max():.4g} degrees (beyond 90): its "
            "coordinates look like latitude-first (lat, lon) pairs",
            "GeoJSON and WKT list longitude first: swap each pair to (lon, lat)",
        )
    if xs.min() < -180 or xs.max() > 180 or ys.min() < -90 or ys.max() > 90:
        raise BadAoiError(
            "the AOI has coordinates outside lon -180..180 / lat -90..90",
            "give lon/lat degrees (EPSG:4326), longitude first; reproject other CRSs first",
        )
    if _crosses_antimeridian(geom):
        raise BadAoiError(
            "the AOI crosses the antimeridian (180 degrees)",
            "split it at 180 degrees and grid each side as its own region (two `m3leo grid` runs)",
        )
    lon, lat = geom.centroid.x, geom.centroid.y
    epsg = utm_zone(lon, lat)
    if epsg is None or ys.min() < -80 or ys.max() > 84:
        raise BadAoiError(
            "the AOI reaches beyond UTM's latitudes (80 S to 84 N)",
            "keep the AOI between 80 S and 84 N; polar areas need another grid",
        )
    meridian = ((epsg % 100) - 1) * 6 - 180 + 3
    reach = max(abs(xs.min() - meridian), abs(xs.max() - meridian))
    if reach > MAX_MERIDIAN_DISTANCE:
        raise BadAoiError(
            f"the AOI is too wide for one UTM zone: it reaches {reach:.0f} degrees of longitude "
            f"from zone {epsg % 100}'s central meridian (at most {MAX_MERIDIAN_DISTANCE:.0f})",
            "split it east-west into narrower AOIs and grid each as its own region",
        )


def _crosses_antimeridian(geom: Any) -> bool:
    """A ring edge jumping more than 180 degrees of longitude, or lon +-180 on both sides."""
    shapely = _shapely()
    parts = getattr(geom, "geoms", [geom])
    for poly in parts:
        for ring in [poly.exterior, *poly.interiors]:
            xs = shapely.get_coordinates(ring)[:, 0]
            if len(xs) > 1 and abs(xs[1:] - xs[:-1]).max() > 180:
                return True
    xs = shapely.get_coordinates(geom)[:, 0]
    return bool(xs.min() <= -180 and xs.max() >= 180)


SWAP_NOTE_KM = 1000.0  # how far a [lat, lon] reading must land for centre_note to mention it


def centre_note(geom: Any) -> tuple[tuple[float, float], str | None]:
    """The AOI's lon/lat centre, and a note when the file may list [lat, lon] pairs.

    The rule (docs/aoi.md): the note is given when every coordinate would also be valid read
    the other way round, that reading's centre lies in another UTM zone more than
    ``SWAP_NOTE_KM`` away, and the latitude as read is smaller in size than the longitude (a
    [lat, lon] file of the mid-latitudes reads that way). m3leo never swaps by itself.
    """
    shapely = _shapely()
    xs, ys = shapely.get_coordinates(geom).T
    lon, lat = float(geom.centroid.x), float(geom.centroid.y)
    if abs(xs).max() > 90 or abs(lat) >= abs(lon):
        return (lon, lat), None
    here, there = utm_zone(lon, lat), utm_zone(lat, lon)
    if there is None or here == there or _km(lon, lat, lat, lon) < SWAP_NOTE_KM:
        return (lon, lat), None
    return (lon, lat), (
        f"read as (lon, lat) pairs, as GeoJSON and WKT are written, the AOI is centred at "
        f"{_deg(lon, lat)}; if its pairs are (lat, lon) it belongs at {_deg(lat, lon)}, "
        f"{_km(lon, lat, lat, lon):,.0f} km away: swap them and run again"
    )


def _deg(lon: float, lat: float) -> str:
    return f"{abs(lon):.2f} {'E' if lon >= 0 else 'W'}, {abs(lat):.2f} {'N' if lat >= 0 else 'S'}"


def _km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance on a 6371 km sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return 6371.0 * math.acos(max(-1.0, min(1.0, c)))
