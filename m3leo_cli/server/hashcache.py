"""Content hashes remembered across rescans and, optionally, across server restarts.

A multi-terabyte mirror cannot be re-hashed at every start: with a cache file, a restart only
hashes files whose size or mtime changed. The file is JSON, written atomically, and never
inside the served folder unless the operator puts it there.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from ..store.layout import write_text_atomic

_VERSION = 1


class HashCache:
    """real path -> (size, mtime_ns, lfs, digest); a changed size or mtime is a miss."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._map: dict[str, tuple[int, int, bool, str]] = {}
        self._dirty = False
        if path is not None and path.is_file():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("version") == _VERSION:
                for real, (size, mtime_ns, lfs, digest) in doc["entries"].items():
                    self._map[real] = (int(size), int(mtime_ns), bool(lfs), str(digest))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._map.clear()  # unreadable or foreign: start afresh, it is only a cache

    def get(self, real: str, size: int, mtime_ns: int, lfs: bool) -> str | None:
        hit = self._map.get(real)
        if hit is not None and hit[:3] == (size, mtime_ns, lfs):
            return hit[3]
        return None

    def put(self, real: str, size: int, mtime_ns: int, lfs: bool, digest: str) -> None:
        with self._lock:
            self._map[real] = (size, mtime_ns, lfs, digest)
            self._dirty = True

    def save(self) -> None:
        """Write the file if anything new was hashed (atomically; errors are not fatal)."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            doc = {"version": _VERSION, "entries": {k: list(v) for k, v in self._map.items()}}
            self._dirty = False
        try:
            write_text_atomic(self.path, json.dumps(doc, separators=(",", ":")))
        except OSError:
            self._dirty = True  # try again after the next scan
