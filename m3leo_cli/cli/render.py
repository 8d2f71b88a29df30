"""Rendering helpers: people on stderr (rich), data on stdout (plain or JSON)."""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich loads on the first thing printed (~20 ms a quiet download never pays)
    from rich.console import Console


@lru_cache(maxsize=1)
def err_console() -> Console:
    """Console for people: stderr, no colour when NO_COLOR is set or stderr is not a terminal."""
    from rich.console import Console

    return Console(
        stderr=True,  # follows sys.stderr when it is replaced (pytest's capsys, redirections)
        no_color=bool(os.environ.get("NO_COLOR")) or not sys.stderr.isatty(),
        highlight=False,
        soft_wrap=True,
    )


def out_console() -> Console:
    """Console for tables on stdout; not squeezed to 80 columns when piped to a file or pager
    (unless $COLUMNS says how wide)."""
    from rich.console import Console

    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(
        file=sys.stdout,
        highlight=False,
        soft_wrap=True,
        no_color=bool(os.environ.get("NO_COLOR")),
        width=200 if piped else None,
    )


def print_json(data: Any) -> None:
    """Data for scripts: one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """A line for people, on stderr."""
    err_console().print(message, markup=False, highlight=False)


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"


def not_published(n: int, datakind: str = "") -> str:
    """The one wording for full-edition tiles ``_parquet.csv`` lists but no shard holds
    (download, verify and export all say it this way)."""
    what = f"{datakind} tiles" if datakind else "tiles"
    return (
        f"{n} {what} not published in this datakind's shards "
        "(_parquet.csv lists them, the shard does not hold them)"
    )
