"""`m3leo stats --bands`: call bandstats.band_stats and render its report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import UsageError
from ..progress import ProgressEvent
from ..selection import Selection
from .render import err_console, out_console, print_json, say


def parse_percentiles(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"bad --percentiles {text!r}", "give numbers, e.g. 2,50,98") from None
    if not values or any(not 0 <= v <= 100 for v in values):
        raise UsageError(f"bad --percentiles {text!r}", "give numbers in 0..100, e.g. 2,50,98")
    return values


def _fmt(v: Any) -> str:
    """Three significant digits (whole numbers from 100 up): enough to read, narrow enough for
    80 columns; --json has every digit."""
    if v is None:
        return "-"
    if isinstance(v, float):
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1e6 or a < 1e-3:
            return f"{v:.2e}"
        return f"{v:.0f}" if a >= 100 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render_bands(report: Any) -> None:
    """One narrow table per modality, so it fits 80 columns: netCDF variables head their bands
    (``coherence`` then ``  winter:12``), numbers are never cut, names wrap only as a last
    resort; classes of label layers follow their table."""
    from rich import box
    from rich.table import Table

    keys = [f"p{q:g}" for q in report.percentiles]
    by_modality: dict[str, list[Any]] = {}
    for b in report.bands:
        by_modality.setdefault(b.modality, []).append(b)
    console = out_console()
    for modality, bands in by_modality.items():
        counts = sorted({b.count for b in bands})
        n = _fmt(counts[0]) if len(counts) == 1 else f"{_fmt(counts[0])}-{_fmt(counts[-1])}"
        many = "bands" if len(bands) > 1 else "band"
        console.print(f"{modality}: {len(bands)} {many}, {n} valid values each", markup=False)
        rows = [
            [b.band, _fmt(b.mean), _fmt(b.std), _fmt(b.min),
             *(_fmt(b.percentiles.get(k)) for k in keys), _fmt(b.max),
             f"{b.nodata_fraction:.1%}"]
            for b in bands
        ]  # fmt: skip
        heads = ["band", "mean", "std", "min", *keys, "max", "nodata"]
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
        for i, h in enumerate(heads):
            if i == 0:
                table.add_column(h, overflow="fold")
            else:
                width = max(len(h), *(len(r[i]) for r in rows))
                table.add_column(h, justify="right", no_wrap=True, min_width=width)
        last = None
        for r in rows:  # "variable:season:x" bands: the variable once, as a heading row
            var, _, rest = r[0].partition(":")
            if rest:
                if var != last:
                    table.add_row(var, *[""] * (len(heads) - 1), style="bold")
                    last = var
                r = [f"  {rest}", *r[1:]]
            table.add_row(*r)
        console.print(table)
        for b in bands:
            if b.classes:
                shown = ", ".join(
                    f"{c['name']} {c['fraction']:.1%}" for c in b.classes if c["count"]
                )
                line = f"{modality} {b.band} classes: {shown}"
                console.print(line, markup=False, soft_wrap=False)


def run_band_stats(
    settings: Settings,
    selection: Selection,
    percentiles: str,
    json_out: bool,
    stats_file: Path | None = None,
) -> None:
    from ..dist.engine import open_engine
    from ..tiles.bandstats import band_stats

    pcts = parse_percentiles(percentiles)
    bar: Any = None
    if err_console().is_terminal:
        from rich.progress import Progress

        bar = Progress(console=err_console(), transient=True)
        task = bar.add_task("band statistics", total=None)
        bar.start()

    def progress(event: ProgressEvent) -> None:
        if bar is None:
            return
        if event.kind == "start":
            bar.update(task, total=event.total_files)
        elif event.kind == "advance":
            bar.advance(task, event.files)

    try:
        with open_engine(settings, progress=progress) as pool:
            report = band_stats(
                settings,
                selection,
                percentiles=pcts,
                stats_file=stats_file,
                progress=progress,
                pool=pool,
            )
    finally:
        if bar is not None:
            bar.stop()
    if json_out:
        print_json(report.as_dict())
    else:
        render_bands(report)
    where = {
        "cache": " (the store cannot be written: the user cache, where export --normalize looks)",
        "file": " (give export --normalize the same --stats FILE)",
    }.get(report.saved_where, "")
    say(
        f"{report.files} files of {report.tiles} tiles in {report.seconds:.1f} s; "
        f"saved to {report.saved_to}{where}"
    )
