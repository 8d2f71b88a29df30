"""One modality of one tile drawn on a matplotlib axes, for ``m3leo show`` (``preview``).

Every panel says what it shows: a colour bar with units (or a legend of classes, or what the
RGB channels are), and a "no data" entry (white, cross-hatched, with its share of the tile)
in every legend, so missing pixels never pass for a value. Every layer is drawn over the
tile's own square (its lon/lat bounds, x scaled by cos(latitude)), so a coarse ~90-100 m
layer covers the same square as the 10 m chips, with bigger pixels. Legends sit outside the
data. Elevation uses the land part of matplotlib's ``terrain`` map (no blue: low land must
not look like water).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .. import spec
from .info import TileFile

if TYPE_CHECKING:
    import numpy as np

    from .model import Tile

NODATA_HATCH = "xxxx"
NODATA_EDGE = "#777777"
# colour bar label (with units) of the first band of the families drawn with one
UNITS = {
    "biomass": "above-ground biomass (Mg/ha)",
    "ghsbuilts": "built-up surface (m² per cell, as stored)",
    "srtmdem": "elevation (m)",
    "s2srm": "value as stored",
}
CMAPS = {"biomass": "YlGn", "ghsbuilts": "magma"}


def _plt() -> Any:
    import matplotlib.pyplot as plt

    return plt


def land_terrain() -> Any:
    """matplotlib's ``terrain`` without its blue (water) quarter: green lowlands to white."""
    import numpy as np
    from matplotlib.colors import ListedColormap

    return ListedColormap(_plt().get_cmap("terrain")(np.linspace(0.25, 1.0, 256)), "land")


def stretch(x: np.ndarray, lo: float = 2, hi: float = 98) -> np.ndarray:
    """Percentile stretch to 0..1, ignoring NaN."""
    import numpy as np

    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros_like(x, dtype=np.float32)
    a, b = np.percentile(finite, [lo, hi])
    out = (x - a) / (b - a) if b > a else np.zeros_like(x)
    return np.nan_to_num(np.clip(out, 0, 1), nan=0.0).astype(np.float32)


class Frame:
    """Where a tile's layers are drawn: its lon/lat square, or pixels for other CRSs."""

    def __init__(self, bbox: tuple[float, float, float, float] | None) -> None:
        self.bbox = bbox

    def geo(self, tile: Tile) -> bool:
        return self.bbox is not None and (tile.crs or "").upper() in ("EPSG:4326", "OGC:CRS84")

    def extent(self, tile: Tile) -> tuple[float, float, float, float]:
        """imshow extent (left, right, bottom, top) of ``tile``."""
        if self.geo(tile):
            w, s, e, n = tile.bounds
            return (w, e, s, n)
        h, w = tile.data.shape[-2:]
        return (0, w, h, 0)

    def apply(self, ax: Any, tile: Tile) -> None:
        """Axes limits = the tile's square (x scaled by cos(latitude)); no ticks."""
        ax.set_xticks([])
        ax.set_yticks([])
        if self.geo(tile) and self.bbox is not None:
            w, s, e, n = self.bbox
            ax.set_xlim(w, e)
            ax.set_ylim(s, n)
            ax.set_aspect(1 / max(math.cos(math.radians((s + n) / 2)), 0.1))


def nodata_patch(fraction: float) -> Any:
    from matplotlib.patches import Patch

    return Patch(
        facecolor="white",
        edgecolor=NODATA_EDGE,
        hatch=NODATA_HATCH,
        label=f"no data ({fraction:.1%})",
    )


def hatch_nodata(ax: Any, mask: np.ndarray, extent: tuple[float, float, float, float]) -> None:
    """White, cross-hatched cover over the ``mask`` pixels (boundaries on pixel edges)."""
    import numpy as np

    if not mask.any():
        return
    h, w = mask.shape
    left, right, bottom, top = extent
    dx, dy = (right - left) / w, (top - bottom) / h
    xs = left + (np.arange(-1, w + 1) + 0.5) * dx
    ys = top - (np.arange(-1, h + 1) + 0.5) * dy
    padded = np.pad(mask.astype(np.float32), 1, mode="edge")
    plt = _plt()
    with plt.rc_context({"hatch.color": NODATA_EDGE, "hatch.linewidth": 0.6}):
        ax.contourf(xs, ys, padded, levels=[0.5, 1.5], colors=["white"], hatches=[NODATA_HATCH])


def legend_below(ax: Any, handles: list[Any], title: str | None = None) -> None:
    ax.legend(
        handles=handles,
        title=title,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        fontsize=7,
        title_fontsize=7,
        frameon=False,
        ncol=min(2, len(handles)),
    )


def colourbar(ax: Any, image: Any, label: str) -> None:
    """A colour bar hugging the image (an inset axes, so it stays beside this panel however
    wide its grid column is)."""
    cax = ax.inset_axes((1.04, 0.0, 0.05, 1.0))
    bar = _plt().colorbar(image, cax=cax)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def draw(ax: Any, tf: TileFile, month: int | None, frame: Frame) -> None:
    """Draw one modality on ``ax``: image, units, nodata, title."""
    family = spec.parse_datakind(tf.datakind).family.name
    drawer = _DRAWERS.get(family, _single_band)
    tile, title = drawer(ax, tf, month, frame)
    frame.apply(ax, tile)
    ax.set_title(title, fontsize=8)


def _fraction(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


def _s2(ax: Any, tf: TileFile, month: int | None, frame: Frame) -> tuple[Tile, str]:
    import numpy as np

    from .model import decode
    from .reader import read_tile

    if month:
        t = read_tile(
            tf.local_path, tf.datakind, [f"{month:02d}_{c}" for c in ("red", "green", "blue")]
        )
        rgb, title = decode(t), f"{tf.datakind} RGB, month {month:02d}"
        rgb[rgb <= 0] = np.nan  # a masked (cloudy) month is stored as 0
    else:
        t = read_tile(tf.local_path, tf.datakind)
        cube = decode(t).reshape(12, 3, *t.data.shape[1:])
        cube[cube <= 0] = np.nan  # masked (cloudy) months are stored as 0
        with np.errstate(all="ignore"):
            rgb = np.nanmedian(cube, axis=0) if np.isfinite(cube).any() else cube[0]
        title = f"{tf.datakind} RGB, median of 12 months"
    mask = ~np.isfinite(rgb).all(axis=0)
    extent = frame.extent(t)
    img = np.clip(np.nan_to_num(np.moveaxis(rgb, 0, -1)), 0, 1)
    ax.imshow(img, interpolation="nearest", extent=extent)
    hatch_nodata(ax, mask, extent)
    legend_below(ax, [nodata_patch(_fraction(mask))], "true colour; 0-255 = reflectance 0-0.3")
    return t, title


def _s1(ax: Any, tf: TileFile, month: int | None, frame: Frame) -> tuple[Tile, str]:
    import numpy as np

    from .model import decode
    from .reader import read_tile

    t = read_tile(tf.local_path, tf.datakind)
    d = decode(t)
    names = t.band_names
    vv = [i for i, n in enumerate(names) if "_vvasc" in n or "_vvdes" in n]
    vh = [i for i, n in enumerate(names) if "_vhasc" in n or "_vhdes" in n]
    with np.errstate(all="ignore"):
        mvv, mvh = np.nanmedian(d[vv], axis=0), np.nanmedian(d[vh], axis=0)
    mask = ~(np.isfinite(mvv) & np.isfinite(mvh))
    extent = frame.extent(t)
    rgb = np.stack([stretch(mvv), stretch(mvh), stretch(mvv - mvh)], axis=-1)
    ax.imshow(rgb, interpolation="nearest", extent=extent)
    hatch_nodata(ax, mask, extent)
    legend_below(
        ax, [nodata_patch(_fraction(mask))], "R: VV, G: VH, B: VV-VH (dB), each 2-98 % stretched"
    )
    return t, f"{tf.datakind} backscatter, seasonal mean"


def _scalar(ax: Any, t: Tile, values: np.ndarray, frame: Frame, label: str, **imshow: Any) -> None:
    """One band with a colour bar (units) and hatched nodata (NaN after decoding)."""
    import numpy as np

    extent = frame.extent(t)
    mask = ~np.isfinite(values)
    image = ax.imshow(
        np.ma.masked_invalid(values), interpolation="nearest", extent=extent, **imshow
    )
    colourbar(ax, image, label)
    hatch_nodata(ax, mask, extent)
    legend_below(ax, [nodata_patch(_fraction(mask))])


def _gssic(ax: Any, tf: TileFile, month: int | None, frame: Frame) -> tuple[Tile, str]:
    from .model import decode
    from .reader import read_tile

    t = read_tile(tf.local_path, tf.datakind, ["coherence"])
    _scalar(ax, t, decode(t)[0], frame, "coherence (0-1, unitless)", cmap="viridis", vmin=0, vmax=1)
    return t, f"gssic {t.band_names[0]}"


def _gunw(ax: Any, tf: TileFile, month: int | None, frame: Frame) -> tuple[Tile, str]:
    import numpy as np

    from .model import decode
    from .reader import read_tile

    t = read_tile(tf.local_path, tf.datakind, ["unwrappedPhase"])
    phase = np.angle(np.exp(1j * decode(t)[0]))  # wrap to (-pi, pi]; NaN stays NaN
    _scalar(ax, t, phase, frame, "wrapped phase (rad)", cmap="twilight", vmin=-math.pi,
            vmax=math.pi)  # fmt: skip
    return t, f"{tf.datakind}\n{t.band_names[0]} (wrapped phase)"


def _modis(ax: Any, tf: TileFile, month: int | None, frame: Frame) -> tuple[Tile, str]:
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from .reader import read_tile

    t = read_tile(tf.local_path, tf.datakind)
    raw = t.data[-1]
    water_mask = raw == spec.MODIS_WATER
    mask = (raw > 100) & ~water_mask
    if t.nodata is not None:
        mask |= t.nodata[-1]
    extent = frame.extent(t)
    cover = np.ma.masked_where(mask | water_mask, raw)
    image = ax.imshow(
        cover, cmap="Greens", vmin=0, vmax=100, interpolation="nearest", extent=extent
    )
    water = np.ma.masked_where(~water_mask, np.ones_like(raw))
    ax.imshow(water, cmap=ListedColormap(["#0064c8"]), vmin=0, vmax=1, interpolation="nearest",
              extent=extent)  # fmt: skip
    colourbar(ax, image, "tree cover (%)")
    hatch_nodata(ax, mask, extent)
    handles = [Patch(color="#0064c8", label="water (200)"), nodata_patch(_fraction(mask))]
    legend_below(ax, handles)
    return t, f"{tf.datakind} {t.band_names[-1]}"


def _worldcover(ax: Any, tf: TileFile, month: int | None, frame: Frame) -> tuple[Tile, str]:
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    from .reader import read_tile

    t = read_tile(tf.local_path, tf.datakind)
    codes = list(spec.ESA_WORLDCOVER_CLASSES)
    colours = [c for _, c in spec.ESA_WORLDCOVER_CLASSES.values()]
    raw = t.data[0].astype(np.int32)
    index = np.full(raw.shape, -1, dtype=np.int32)
    for i, code in enumerate(codes):
        index[raw == code] = i
    extent = frame.extent(t)
    norm = BoundaryNorm(np.arange(-0.5, len(codes) + 0.5), len(codes))
    ax.imshow(np.ma.masked_less(index, 0), cmap=ListedColormap(colours), norm=norm,
              interpolation="nearest", extent=extent)  # fmt: skip
    mask = index < 0  # code 0 and anything that is not a class
    hatch_nodata(ax, mask, extent)
    present = sorted(set(np.unique(raw).tolist()) & set(codes))
    handles = [
        Patch(
            color=spec.ESA_WORLDCOVER_CLASSES[c][1],
            label=f"{c} {spec.ESA_WORLDCOVER_CLASSES[c][0]}",
        )
        for c in present
    ]
    handles.append(nodata_patch(_fraction(mask)))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=6,
              frameon=False, title="class code", title_fontsize=7)  # fmt: skip
    return t, f"{tf.datakind} (ESA WorldCover classes)"


def _single_band(ax: Any, tf: TileFile, month: int | None, frame: Frame) -> tuple[Tile, str]:
    """biomass, ghsbuilts, srtmdem, s2srm: the first band, with units."""
    from .model import decode
    from .reader import band_names, read_tile

    family = spec.parse_datakind(tf.datakind).family.name
    first = (tf.bands or band_names(tf.local_path, tf.datakind))[0]
    t = read_tile(tf.local_path, tf.datakind, [first])
    cmap = land_terrain() if family == "srtmdem" else CMAPS.get(family, "gray")
    _scalar(ax, t, decode(t)[0], frame, UNITS.get(family, "value as stored"), cmap=cmap)
    return t, f"{tf.datakind} {t.band_names[0]}"


_DRAWERS = {
    "s2rgbm": _s2,
    "s1grd": _s1,
    "gssic": _gssic,
    "gunw": _gunw,
    "modis44b006veg": _modis,
    "esaworldcover": _worldcover,
}
