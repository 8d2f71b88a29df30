"""Pictures: one tile across its modalities (``m3leo show``) and a region's tiles (``m3leo map``).

matplotlib is the optional extra ``viz``; it is imported inside the functions (Agg backend) and
a missing install is a MissingDependencyError with the pip line. The HTML map needs nothing: it
is a self-contained page with an inline SVG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec
from ..config import Settings
from ..errors import UsageError
from .info import TileFile, TileInfo, locate_tile, require_local

if TYPE_CHECKING:
    import numpy as np

SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c", None: "#999999"}
LOCAL_COLOURS = {"local": "#2ca02c", "remote only": "#c7c7c7"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "viz") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _stretch(x: np.ndarray, lo: float = 2, hi: float = 98) -> np.ndarray:
    """Percentile stretch to 0..1, ignoring NaN."""
    import numpy as np

    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros_like(x, dtype=np.float32)
    a, b = np.percentile(finite, [lo, hi])
    out = (x - a) / (b - a) if b > a else np.zeros_like(x)
    return np.nan_to_num(np.clip(out, 0, 1), nan=0.0).astype(np.float32)


# --------------------------------------------------------------------------- panels


def _panel(ax: Any, tf: TileFile, month: int | None) -> None:
    """Draw one modality on ``ax`` (title, colour map, legend or colour bar)."""
    import numpy as np

    from .model import decode
    from .reader import read_tile

    family = spec.parse_datakind(tf.datakind).family.name
    plt = _pyplot()
    ax.set_xticks([])
    ax.set_yticks([])
    title = tf.datakind
    if family == "s2rgbm":
        if month:
            t = read_tile(
                tf.local_path, tf.datakind, [f"{month:02d}_{c}" for c in ("red", "green", "blue")]
            )
            rgb, title = decode(t), f"{tf.datakind} RGB month {month:02d}"
        else:
            t = read_tile(tf.local_path, tf.datakind)
            cube = decode(t).reshape(12, 3, *t.data.shape[1:])
            cube[cube <= 0] = np.nan  # masked (cloudy) months are stored as 0
            with np.errstate(all="ignore"):
                rgb = np.nanmedian(cube, axis=0) if np.isfinite(cube).any() else cube[0]
            title = f"{tf.datakind} RGB median of 12 months"
        img = np.clip(np.nan_to_num(np.moveaxis(rgb, 0, -1)), 0, 1)
        ax.imshow(img, interpolation="nearest")
    elif family == "s1grd":
        t = read_tile(tf.local_path, tf.datakind)
        d = decode(t)
        names = t.band_names
        vv = [i for i, n in enumerate(names) if "_vvasc" in n or "_vvdes" in n]
        vh = [i for i, n in enumerate(names) if "_vhasc" in n or "_vhdes" in n]
        with np.errstate(all="ignore"):
            mvv, mvh = np.nanmedian(d[vv], axis=0), np.nanmedian(d[vh], axis=0)
        rgb = np.stack([_stretch(mvv), _stretch(mvh), _stretch(mvv - mvh)], axis=-1)
        ax.imshow(rgb, interpolation="nearest")
        title = f"{tf.datakind} VV / VH / VV-VH (dB, seasonal median)"
    elif family == "gssic":
        t = read_tile(tf.local_path, tf.datakind, ["coherence"])
        band = t.band_names[0]
        im = ax.imshow(decode(t)[0], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        title = f"gssic {band}"
    elif family == "gunw":
        t = read_tile(tf.local_path, tf.datakind, ["unwrappedPhase"])
        phase = np.angle(np.exp(1j * decode(t)[0]))  # wrap to (-pi, pi]
        im = ax.imshow(phase, cmap="twilight", vmin=-math.pi, vmax=math.pi, interpolation="nearest")
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="rad")
        title = f"{tf.datakind}\n{t.band_names[0]} (wrapped phase)"
    elif family == "esaworldcover":
        _classes_panel(ax, tf)
        title = f"{tf.datakind} (ESA WorldCover)"
    elif family == "modis44b006veg":
        t = read_tile(tf.local_path, tf.datakind)
        raw = t.data[-1]
        cover = np.ma.masked_where(raw > 100, raw)
        im = ax.imshow(cover, cmap="Greens", vmin=0, vmax=100, interpolation="nearest")
        water = np.ma.masked_where(raw != spec.MODIS_WATER, np.ones_like(raw))
        ax.imshow(water, cmap=_listed(["#0064c8"]), vmin=0, vmax=1, interpolation="nearest")
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="% tree cover")
        from matplotlib.patches import Patch

        ax.legend(
            handles=[Patch(color="#0064c8", label="water (200)")], loc="lower left", fontsize=7
        )
        title = f"{t.band_names[-1]}"
    else:  # biomass, ghsbuilts, srtmdem, s2srm: first band with a colour bar
        t = read_tile(tf.local_path, tf.datakind, [band_first(tf)])
        cmap = {"srtmdem": "terrain", "biomass": "YlGn", "ghsbuilts": "magma"}.get(family, "gray")
        im = ax.imshow(decode(t)[0], cmap=cmap, interpolation="nearest")
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        title = f"{tf.datakind} {t.band_names[0]}"
    ax.set_title(title, fontsize=8)


def band_first(tf: TileFile) -> str:
    from .reader import band_names

    return (tf.bands or band_names(tf.local_path, tf.datakind))[0]


def _listed(colours: Sequence[str]) -> Any:
    from matplotlib.colors import ListedColormap

    return ListedColormap(list(colours))


def _classes_panel(ax: Any, tf: TileFile) -> None:
    import numpy as np
    from matplotlib.colors import BoundaryNorm
    from matplotlib.patches import Patch

    from .reader import read_tile

    t = read_tile(tf.local_path, tf.datakind)
    codes = list(spec.ESA_WORLDCOVER_CLASSES)
    colours = [c for _, c in spec.ESA_WORLDCOVER_CLASSES.values()]
    raw = t.data[0].astype(np.int32)
    index = np.full(raw.shape, -1, dtype=np.int32)
    for i, code in enumerate(codes):
        index[raw == code] = i
    shown = np.ma.masked_less(index, 0)
    norm = BoundaryNorm(np.arange(-0.5, len(codes) + 0.5), len(codes))
    ax.imshow(shown, cmap=_listed(colours), norm=norm, interpolation="nearest")
    present = sorted(set(np.unique(raw).tolist()) & set(codes))
    handles = [
        Patch(
            color=spec.ESA_WORLDCOVER_CLASSES[c][1],
            label=f"{c} {spec.ESA_WORLDCOVER_CLASSES[c][0]}",
        )
        for c in present
    ]
    if (raw == 0).any():
        handles.append(Patch(facecolor="white", edgecolor="black", label="0 no data"))
    ax.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6, frameon=False
    )


# --------------------------------------------------------------------------- show


def render_tile(
    settings: Settings,
    tile_id: str,
    out: Path,
    *,
    edition: str,
    regions: Sequence[str] = (),
    modalities: Sequence[str] = (),
    month: int | None = None,
    dpi: int = 100,
) -> tuple[Path, TileInfo]:
    """Write one PNG of ``tile_id`` across its local modalities; returns (out, tile info)."""
    if month is not None and not 1 <= month <= 12:
        raise UsageError(f"--month must be 1..12, not {month}", "e.g. --month 7 for July")
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out} must end in .png", "e.g. --out tile.png")
    info = locate_tile(
        settings, tile_id, edition=edition, regions=regions, modalities=modalities, read_bands=False
    )
    files = require_local(info, modalities)
    plt = _pyplot()
    n = len(files)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows + 0.7), squeeze=False)
    try:
        for ax, tf in zip(axes.ravel(), files, strict=False):
            _panel(ax, tf, month)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        bounds = ", ".join(f"{v:.4f}" for v in info.bbox) if info.bbox else "unknown"
        fig.suptitle(
            f"tile {info.tile_id} · {info.region} · split {info.split or '?'} · "
            f"bounds W,S,E,N = {bounds}",
            fontsize=10,
        )
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return out, info


# --------------------------------------------------------------------------- map


def region_tiles(settings: Settings, edition: str, region: str) -> list[dict[str, Any]]:
    """One row per tile of the region: id, split, bbox, and whether any file of it is local."""
    import pyarrow.compute as pc

    from ..catalog.manifest import read_manifest
    from ..store.layout import Store
    from .info import _manifests

    store = Store(settings.data_dir)
    ed = spec.get_edition(edition).name
    reg = spec.get_region(region, ed).name
    paths = [p for _, p in _manifests(store, ed, [reg])]
    table = read_manifest(
        paths,
        filter=pc.field("kind") == "tile",
        columns=["tile_id", "split", "path", "lon_min", "lat_min", "lon_max", "lat_max"],
    )
    tiles: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        t = tiles.setdefault(
            row["tile_id"],
            {"tile_id": row["tile_id"], "split": row["split"], "bbox": None, "local": False},
        )
        if row["lon_min"] is not None and t["bbox"] is None:
            t["bbox"] = (row["lon_min"], row["lat_min"], row["lon_max"], row["lat_max"])
        if not t["local"] and store.local_path(ed, reg, row["path"]).is_file():
            t["local"] = True
    return sorted(tiles.values(), key=lambda t: t["tile_id"])


def render_map(
    settings: Settings,
    region: str,
    out: Path,
    *,
    edition: str,
    color_by: str = "split",
    dpi: int = 100,
) -> tuple[Path, int]:
    """Write the region's tiles (manifest bboxes) as PNG or HTML; returns (out, tiles drawn)."""
    if color_by not in ("split", "local"):
        raise UsageError(f"unknown --color-by {color_by!r}", "use --color-by split or local")
    kind = out.suffix.lower()
    if kind not in (".png", ".html", ".htm"):
        raise UsageError(f"--out {out} must end in .png or .html", "e.g. --out europe.html")
    tiles = [t for t in region_tiles(settings, edition, region) if t["bbox"] is not None]
    if not tiles:
        raise UsageError(
            f"the {edition} manifest of {region} has no tile bounding boxes",
            "only the miniset publishes tile geometry: use --edition miniset",
        )

    def colour(t: dict[str, Any]) -> str:
        if color_by == "split":
            return SPLIT_COLOURS.get(t["split"], SPLIT_COLOURS[None])
        return LOCAL_COLOURS["local" if t["local"] else "remote only"]

    legend = (
        {s: SPLIT_COLOURS[s] for s in spec.SPLITS} if color_by == "split" else dict(LOCAL_COLOURS)
    )

    def key(t: dict[str, Any]) -> str:
        if color_by == "split":
            return str(t["split"])
        return "local" if t["local"] else "remote only"

    counts = {k: 0 for k in legend}
    for t in tiles:
        counts[key(t)] = counts.get(key(t), 0) + 1
    title = f"M3LEO {edition} · {region} · {len(tiles)} tiles · coloured by {color_by}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".png":
        _map_png(tiles, colour, legend, counts, title, out, dpi)
    else:
        from .svgmap import map_html

        out.write_text(map_html(tiles, colour, legend, counts, title), encoding="utf-8")
    return out, len(tiles)


def _map_png(
    tiles: list[dict[str, Any]],
    colour: Any,
    legend: dict[str, str],
    counts: dict[str, int],
    title: str,
    out: Path,
    dpi: int,
) -> None:
    plt = _pyplot()
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Patch, Rectangle

    rects = [
        Rectangle(
            (t["bbox"][0], t["bbox"][1]), t["bbox"][2] - t["bbox"][0], t["bbox"][3] - t["bbox"][1]
        )
        for t in tiles
    ]
    fig, ax = plt.subplots(figsize=(8, 7))
    try:
        ax.add_collection(
            PatchCollection(
                rects, facecolors=[colour(t) for t in tiles], edgecolors="black", linewidths=0.2
            )
        )
        w = min(t["bbox"][0] for t in tiles)
        e = max(t["bbox"][2] for t in tiles)
        s = min(t["bbox"][1] for t in tiles)
        n = max(t["bbox"][3] for t in tiles)
        pad = max(e - w, n - s) * 0.05 or 0.05
        ax.set_xlim(w - pad, e + pad)
        ax.set_ylim(s - pad, n + pad)
        mid = math.radians((s + n) / 2)
        ax.set_aspect(1 / max(math.cos(mid), 0.1))
        ax.set_xlabel("longitude (°)")
        ax.set_ylabel("latitude (°)")
        ax.set_title(title, fontsize=10)
        ax.legend(
            handles=[Patch(color=c, label=f"{k} ({counts.get(k, 0)})") for k, c in legend.items()],
            loc="best",
            fontsize=8,
        )
        fig.tight_layout()
        fig.savefig(out, dpi=dpi, format="png")
    finally:
        plt.close(fig)
