"""Progress reporting without a UI dependency: the library calls a callback with events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    """One thing that happened.

    kind:
      - "start":   a phase begins; ``total_files``/``total_bytes`` may be set
      - "advance": ``files`` finished and/or ``bytes`` transferred since the last event
      - "message": a line for people (``message``)
      - "done":    the phase ended
    """

    kind: str
    phase: str = ""
    files: int = 0
    bytes: int = 0
    total_files: int | None = None
    total_bytes: int | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """The default callback: ignore everything."""
