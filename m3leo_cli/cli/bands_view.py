"""`m3leo stats --bands`: call bandstats.band_stats and render its report."""

from __future__ import annotations

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
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def run_band_stats(
    settings: Settings, selection: Selection, percentiles: str, json_out: bool
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
            report = band_stats(settings, selection, percentiles=pcts, progress=progress, pool=pool)
    finally:
        if bar is not None:
            bar.stop()
    if json_out:
        print_json(report.as_dict())
    else:
        from rich.table import Table

        keys = [f"p{q:g}" for q in report.percentiles]
        table = Table("modality", "band", "count", "mean", "std", "min", "max", *keys, "nodata")
        for b in report.bands:
            table.add_row(
                b.modality, b.band, _fmt(b.count), _fmt(b.mean), _fmt(b.std), _fmt(b.min),
                _fmt(b.max), *(_fmt(b.percentiles.get(k)) for k in keys),
                f"{b.nodata_fraction:.1%}",
            )  # fmt: skip
        out_console().print(table)
        for b in report.bands:
            if b.classes:
                rows = ", ".join(
                    f"{c['name']} {c['fraction']:.1%}" for c in b.classes if c["count"]
                )
                out_console().print(f"{b.modality} {b.band} classes: {rows}", markup=False)
    say(
        f"{report.files} files of {report.tiles} tiles in {report.seconds:.1f} s; "
        f"saved to {report.saved_to}"
    )
