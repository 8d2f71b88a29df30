"""What each stored file was when m3leo wrote it: size, mtime and sha256, so reads check cheaply.

Every file a download commits (``fetch.transfer``) or an unpack writes (``full.unpack``) is
recorded here; ``tiles.integrity.check_intact`` compares a file's ``os.stat`` with its record
before every read and re-hashes only a file whose size or mtime no longer match.

The record is one SQLite database per edition and region::

    <data_dir>/.m3leo/integrity/<edition>/<region>.sqlite
    files(path TEXT PRIMARY KEY,   -- relative to <data_dir>/<edition>/<region>/
          size INTEGER, mtime_ns INTEGER, sha256 BLOB)   -- WITHOUT ROWID

Why SQLite: a point lookup costs 4-10 us and an insert 12-50 us at any size (the full edition
is ~17 M files, ~120 bytes a row); many processes and threads write through SQLite's own file
locks (a busy timeout), and a kill (even SIGKILL) loses nothing that was committed: each record
is committed on its own. The journal is a rollback journal kept in place (``PERSIST``) with
``synchronous=OFF``: no fsync per record (the run's ``sync_store`` flushes the records with the
files they describe), no file created per transaction, and only POSIX locks, which network
filesystems honour where they honour the store lock; SQLite's faster-reading WAL mode needs
memory shared between processes, which hosts sharing a store over NFS or Lustre (Dask workers)
do not have. A record is a cache, never the only truth: a file without one is re-hashed against
the manifest on its next read, and recorded then; a damaged database (power lost mid-write) is
set aside as ``<db>.damaged`` and started again.

Recording never fails the write it follows: a store whose state folder cannot be written (a
read-only copy) just keeps no record, and its files are re-hashed when read.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

STATE = ".m3leo"
FOLDER = "integrity"
BUSY_MS = 60_000  # a writer waits this long for another process's transaction
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
    "mtime_ns INTEGER NOT NULL, sha256 BLOB) WITHOUT ROWID"
)


@dataclass(frozen=True)
class Place:
    """Where a stored file's record lives: its store, edition, region and key."""

    root: Path  # the data dir
    edition: str
    region: str
    key: str  # path relative to the region folder, '/'-separated
    db: str  # <root>/.m3leo/integrity/<edition>/<region>.sqlite (a str: checked on every read)


@dataclass(frozen=True)
class Record:
    size: int
    mtime_ns: int
    sha256: bytes | None  # None: written with another checksum (git blob sha1)

    def matches(self, st: os.stat_result) -> bool:
        return self.size == st.st_size and self.mtime_ns == st.st_mtime_ns


# folder -> (root, edition, region, prefix, db), or None outside a store
_folders: dict[str, tuple[Path, str, str, str, str] | None] = {}
_conns: dict[tuple[int, str], tuple[sqlite3.Connection, int, threading.Lock]] = {}
_guard = threading.Lock()


def place_of(path: Path | str) -> Place | None:
    """The record place of a file under a store (a folder holding ``.m3leo`` or ``manifest``,
    then ``<edition>/<region>/...``); None for a file outside any store. Cached per folder."""
    full = os.path.abspath(path)
    folder, name = os.path.split(full)
    if folder in _folders:
        hit = _folders[folder]
    else:
        hit = _folders[folder] = _find_root(folder)
    if hit is None:
        return None
    root, edition, region, prefix, db = hit
    return Place(root, edition, region, f"{prefix}/{name}" if prefix else name, db)


def _find_root(folder: str) -> tuple[Path, str, str, str, str] | None:
    parts = Path(folder).parts
    for i in range(len(parts) - 2, 0, -1):  # the store holds <edition>/<region> at least
        root = Path(*parts[:i])
        if (root / STATE).is_dir() or (root / "manifest").is_dir():
            edition, region = parts[i], parts[i + 1]
            if edition.startswith(".") or edition == "manifest":
                return None  # state or manifest files: not tiles
            db = str(root / STATE / FOLDER / edition / f"{region}.sqlite")
            return root, edition, region, "/".join(parts[i + 2 :]), db
    return None


def _connect(db: str, *, create: bool) -> tuple[sqlite3.Connection, threading.Lock] | None:
    """This process's connection to ``db`` (None when it does not exist and ``create`` is
    false). A database replaced on disk (a store deleted and made again, or a damaged record
    set aside) is opened again."""
    key = (os.getpid(), db)  # a forked child (a DataLoader worker) opens its own
    with _guard:  # stat and compare under the lock: a thread that saw no file yet must not
        try:  # take the one another thread just made for a replaced database
            ino: int | None = os.stat(db).st_ino
        except FileNotFoundError:
            if not create:
                return None
            ino = None
        got = _conns.get(key)
        if got is not None and got[1] == ino:
            return got[0], got[2]
        # a replaced database's old connection is dropped, not closed: another thread may be
        # inside it this moment (closing it under that thread crashes sqlite); it closes once
        # the last user lets go of it
        os.makedirs(os.path.dirname(db), exist_ok=True)
        conn = sqlite3.connect(db, timeout=BUSY_MS / 1000, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        conn.execute("PRAGMA journal_mode=PERSIST")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(_SCHEMA)
        lock = threading.Lock()
        _conns[key] = (conn, os.stat(db).st_ino, lock)
        return conn, lock


def _damaged(db: str, exc: sqlite3.Error) -> None:
    """Set a damaged record database aside (``<db>.damaged``): records are a cache, so the
    next write starts a new one and reads re-hash against the manifest meanwhile."""
    text = str(exc).lower()
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        try:
            os.replace(db, f"{db}.damaged")
        except OSError:
            pass


def lookup(place: Place) -> Record | None:
    """The file's record, or None (never recorded, or no readable record)."""
    if _pending and _state["pid"] == os.getpid():
        flush()  # this process's own writes first
    try:
        got = _connect(place.db, create=False)
        if got is None:
            return None
        conn, lock = got
        with lock:
            row = conn.execute(
                "SELECT size, mtime_ns, sha256 FROM files WHERE path = ?", (place.key,)
            ).fetchone()
    except sqlite3.Error as exc:
        _damaged(place.db, exc)
        return None
    except OSError:
        return None
    if row is None:
        return None
    return Record(int(row[0]), int(row[1]), bytes(row[2]) if row[2] is not None else None)


def record(path: Path | str, sha256: bytes | str | None, st: os.stat_result | None = None) -> None:
    """Note that ``path`` (a store file just written, or just re-hashed) is intact with this
    sha256 (raw or hex; None: not known). Best effort: never raises.

    Records are buffered per process and written :data:`FLUSH_RECORDS` at a time (one SQLite
    transaction instead of one per file: a download of small files paid ~15 % more CPU for
    one each), or when :data:`FLUSH_SECONDS` have passed, at :func:`flush` (run ends, each
    unpacked shard, before any lookup in this process) and at exit. A kill loses at most the
    buffer: those files are re-hashed on their next read, never trusted blindly.
    """
    place = place_of(path)
    if place is None:
        return
    try:
        st = st or os.stat(path)
    except OSError:
        return
    raw = bytes.fromhex(sha256) if isinstance(sha256, str) else sha256
    row = (place.key, st.st_size, st.st_mtime_ns, raw)
    with _pending_lock:
        pending = _pending_here()
        pending.append((place.db, row))
        due = len(pending) >= FLUSH_RECORDS or time.monotonic() - _state["flushed"] >= (
            FLUSH_SECONDS
        )
    if due:
        flush()


def record_written(path: Path | str, checksum_kind: str, checksum: bytes) -> None:
    """A download's commit step: ``path`` was renamed into place, verified against
    ``checksum`` (of ``checksum_kind``)."""
    record(path, checksum if checksum_kind == "sha256" else None)


FLUSH_RECORDS = 256
FLUSH_SECONDS = 1.0
_pending: list[tuple[str, tuple[str, int, int, bytes | None]]] = []
_pending_lock = threading.Lock()
_state: dict[str, float] = {"pid": -1.0, "flushed": 0.0}


def _pending_here() -> list[tuple[str, tuple[str, int, int, bytes | None]]]:
    """This process's buffer (call with ``_pending_lock``). A forked child starts empty (what
    it inherited is its parent's to write) and flushes at its exit, as the parent does."""
    if _state["pid"] != os.getpid():
        _pending.clear()
        _state["pid"] = float(os.getpid())
        _state["flushed"] = time.monotonic()
        import atexit
        import multiprocessing.util

        atexit.register(flush)
        multiprocessing.util.Finalize(None, flush, exitpriority=100)  # children skip atexit
    return _pending


def flush() -> None:
    """Write the buffered records now (one transaction per database)."""
    with _pending_lock:
        if _state["pid"] != os.getpid() or not _pending:
            _state["flushed"] = time.monotonic()
            return
        rows = list(_pending)
        _pending.clear()
        _state["flushed"] = time.monotonic()
    by_db: dict[str, list[tuple[str, int, int, bytes | None]]] = {}
    for db, row in rows:
        by_db.setdefault(db, []).append(row)
    for db, batch in by_db.items():
        _write(db, batch)


def record_many(
    files: list[tuple[Path | str, bytes | str | None, os.stat_result | None]],
) -> None:
    """:func:`record` for many files in one transaction per database (an unpacked batch)."""
    for path, sha, st in files:
        record(path, sha, st)
    flush()


def _write(db: str, rows: list[tuple[str, int, int, bytes | None]]) -> None:
    try:
        got = _connect(db, create=True)
        if got is None:
            return
        conn, lock = got
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _damaged(db, exc)  # a read-only store keeps no record: its files are re-hashed
    except OSError:
        return
