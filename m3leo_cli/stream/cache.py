"""Fetched row groups' tiles on disk, under a byte budget, least recently used out first.

One folder per row group, ``<root>/<shard sha256>/<row group>/``, holding the tile files exactly
as the shard stores them (decoded from pages whose CRCs pyarrow verified) and ``complete.json``
listing each file's size and sha256, written last: a folder without it, or whose files do not
match it, is a miss and is fetched again. An SQLite table (``cache.sqlite``) keeps each entry's
bytes and last use, shared by every DataLoader worker and rank on the machine; a file lock per
row group makes two of them that need the same row group fetch it once.

The cache lives in the store's state folder by default (``.m3leo/stream-cache``), where no
store scan looks: it is never mistaken for downloaded tiles.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import StreamError
from .plan import RowGroup

MARKER = "complete.json"
FREE_SHARE = 0.5  # the default budget: this share of the cache folder's free space
MIN_ENTRIES = 4  # a budget must hold at least the prefetch window plus this many row groups


def default_root(data_dir: Path) -> Path:
    return Path(data_dir) / ".m3leo" / "stream-cache"


def _free(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def resolve_budget(root: Path, budget: int | None, need: int, largest: int) -> int:
    """The byte budget: ``budget`` or a share of the free space; refused up front (with the
    sizes) when it cannot hold the working set (``need``: prefetch window + a few row groups)."""
    free = _free(root)
    used = CacheIndex(root).total() if (root / "cache.sqlite").exists() else 0
    chosen = int(budget) if budget is not None else int(FREE_SHARE * (free + used))
    floor = need + MIN_ENTRIES * largest
    if chosen < floor or free + used < min(chosen, floor):
        raise StreamError(
            f"the stream cache at {root} needs at least {gib(floor)} (prefetch window and "
            f"{MIN_ENTRIES} row groups of up to {gib(largest)}); the budget is {gib(chosen)} "
            f"and {gib(free)} is free there",
            "free space, or point the cache elsewhere: data.cache_dir=/scratch/m3leo-cache "
            "(data.cache_bytes sets the budget)",
        )
    return chosen


class CacheIndex:
    """The entries' bytes and last use (SQLite: one row per row group)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "cache.sqlite"
        self._local = threading.local()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (SQLite's are per thread; never one shared across a fork)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            local.conn.execute("PRAGMA journal_mode=WAL")
            local.conn.execute(
                "CREATE TABLE IF NOT EXISTS entry (key TEXT PRIMARY KEY, bytes INTEGER, used REAL)"
            )
            local.pid = os.getpid()
        conn: sqlite3.Connection = local.conn
        return conn

    def put(self, key: str, size: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO entry VALUES (?, ?, ?)", (key, size, time.time()))

    def touch(self, key: str) -> None:
        self.conn.execute("UPDATE entry SET used = ? WHERE key = ?", (time.time(), key))

    def remove(self, key: str) -> None:
        self.conn.execute("DELETE FROM entry WHERE key = ?", (key,))

    def total(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM entry").fetchone()[0])

    def oldest(self) -> Iterator[tuple[str, int]]:
        yield from self.conn.execute("SELECT key, bytes FROM entry ORDER BY used").fetchall()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._local = threading.local()


class RowGroupCache:
    """The row-group cache under ``root`` with a budget of ``budget`` bytes."""

    def __init__(self, root: Path, budget: int) -> None:
        self.root = Path(root)
        self.budget = int(budget)
        self.index = CacheIndex(self.root)

    def folder(self, g: RowGroup) -> Path:
        return self.root / g.sha256 / str(g.rg)

    def listed(self, g: RowGroup) -> dict[str, list[Any]]:
        try:
            data = json.loads((self.folder(g) / MARKER).read_text(encoding="utf-8"))
            return dict(data["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def has(self, g: RowGroup, paths: Iterable[str]) -> bool:
        """Every one of ``paths`` is in the entry, at the size it was written with."""
        files = self.listed(g)
        folder = self.folder(g)
        for p in paths:
            size = files.get(p, [None])[0]
            try:
                if size is None or os.stat(folder / p).st_size != size:
                    return False
            except OSError:
                return False
        return True

    @contextlib.contextmanager
    def lock(self, g: RowGroup) -> Iterator[None]:
        """One fetcher per row group across processes (the others wait, then find it cached)."""
        import fcntl

        path = self.root / g.sha256 / f"{g.rg}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def commit(self, g: RowGroup, written: dict[str, tuple[int, str]], pinned: set[str]) -> None:
        """Record the files just written (merged with what the entry held), then evict down to
        the budget (never an entry in ``pinned``: row groups still needed by this stream)."""
        files = self.listed(g)
        files.update({p: [size, sha] for p, (size, sha) in written.items()})
        folder = self.folder(g)
        tmp = folder / f".{MARKER}.{os.getpid()}"
        tmp.write_text(json.dumps({"files": files}), encoding="utf-8")
        os.replace(tmp, folder / MARKER)
        self.index.put(g.key, sum(int(v[0]) for v in files.values()))
        self.evict(pinned | {g.key})

    def touch(self, g: RowGroup) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.index.touch(g.key)

    def evict(self, pinned: set[str]) -> int:
        """Remove least recently used entries until the total fits the budget; returns bytes."""
        total = self.index.total()
        freed = 0
        for key, size in self.index.oldest():
            if total <= self.budget:
                break
            if key in pinned:
                continue
            self.drop_key(key)
            total -= size
            freed += size
        return freed

    def drop(self, g: RowGroup) -> None:
        self.drop_key(g.key)

    def drop_key(self, key: str) -> None:
        sha, _, rg = key.partition("/")
        folder = self.root / sha / rg
        with contextlib.suppress(OSError):
            (folder / MARKER).unlink()  # a miss from now on, even if removal stops half-way
        shutil.rmtree(folder, ignore_errors=True)
        self.index.remove(key)
