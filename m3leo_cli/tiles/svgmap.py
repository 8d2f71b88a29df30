"""A region map as one self-contained HTML page (inline SVG, no script, no network)."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

_WIDTH = 900


def map_html(
    tiles: list[dict[str, Any]],
    colour: Callable[[dict[str, Any]], str],
    legend: dict[str, str],
    counts: dict[str, int],
    title: str,
) -> str:
    """Tiles as rectangles in lon/lat (y flipped, x scaled by cos(latitude)), with tooltips."""
    w = min(t["bbox"][0] for t in tiles)
    e = max(t["bbox"][2] for t in tiles)
    s = min(t["bbox"][1] for t in tiles)
    n = max(t["bbox"][3] for t in tiles)
    kx = math.cos(math.radians((s + n) / 2)) or 1.0
    span_x, span_y = max((e - w) * kx, 1e-9), max(n - s, 1e-9)
    scale = _WIDTH / span_x
    height = max(int(span_y * scale), 50)
    if height > 1200:  # very tall regions: fit the height instead
        scale = 1200 / span_y
        height = 1200
    width = int(span_x * scale)
    pad = 10

    def x(lon: float) -> float:
        return pad + (lon - w) * kx * scale

    def y(lat: float) -> float:
        return pad + (n - lat) * scale

    rects = []
    for t in tiles:
        lon0, lat0, lon1, lat1 = t["bbox"]
        tip = html.escape(f"{t['tile_id']} · {t['split']} · {'local' if t['local'] else 'remote'}")
        rw, rh = max((lon1 - lon0) * kx * scale, 0.5), max((lat1 - lat0) * scale, 0.5)
        rects.append(
            f'<rect x="{x(lon0):.2f}" y="{y(lat1):.2f}" width="{rw:.2f}" height="{rh:.2f}" '
            f'fill="{colour(t)}">'
            f"<title>{tip}</title></rect>"
        )
    items = "".join(
        f'<li><span style="background:{c}"></span>{html.escape(k)} ({counts.get(k, 0)})</li>'
        for k, c in legend.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
ul.legend {{ list-style: none; padding: 0; }}
ul.legend li {{ display: inline-block; margin-right: 1.5em; }}
ul.legend span {{ display: inline-block; width: 1em; height: 1em; margin-right: .4em;
  vertical-align: middle; border: 1px solid #333; }}
svg rect {{ stroke: #222; stroke-width: .3; }}
svg rect:hover {{ stroke: #000; stroke-width: 1.5; }}
</style></head>
<body>
<h1 style="font-size:1.1em">{html.escape(title)}</h1>
<p>Extent W,S,E,N = {w:.4f}, {s:.4f}, {e:.4f}, {n:.4f} (EPSG:4326). Hover a tile for its id.</p>
<ul class="legend">{items}</ul>
<svg xmlns="http://www.w3.org/2000/svg" width="{width + 2 * pad}" height="{height + 2 * pad}"
 viewBox="0 0 {width + 2 * pad} {height + 2 * pad}">
{"".join(rects)}
</svg>
</body></html>
"""
