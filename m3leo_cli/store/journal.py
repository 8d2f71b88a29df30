"""Durability without an fsync per file: a run marker, syncs, suspects after a crash.

A download writes each file as ``<dest>.part``, hashes it while streaming and renames it into
place without an ``fsync``: that alone capped a loop of small files near 260 files/s on this
project's 2-core test machine. Instead a run first writes a small marker (fsynced) saying when it
began; every ``CHECKPOINT_SECONDS`` and at the end it syncs the store's filesystem (``syncfs``
on Linux, for each filesystem mounted inside the store; ``sync`` elsewhere: every byte the run
wrote is then on disk) and moves the marker's time forward; a clean end removes it. ``syncfs``
matters on a cluster node: ``sync`` would also wait for every other job's writes to the shared
filesystems. Downloads also ask the kernel to start writing each file out as it is written
(:func:`start_writeback`, Linux's ``sync_file_range``, which does not wait), so the final sync
has little left to wait for and a long run never piles up dirty memory.
A killed process loses nothing this way (the kernel already holds its writes); what a marker
left behind guards against is the machine stopping (power, kernel crash) before the sync.

The next run on the store (it holds the store lock, so every marker it finds is of a run that
is over) turns such a marker into *suspects*: every store file modified since that marker's
time, listed in ``<state>/suspects.txt``. A suspect is re-hashed against its checksum before a
download trusts it (and fetched again if it is wrong); ``verify`` re-hashes everything anyway.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

from .integrity import flush as flush_records
from .layout import Store, write_text_atomic

CHECKPOINT_SECONDS = 30.0  # sync at least this often during a long run
MARKERS = "runs"
SUSPECTS = "suspects.txt"
MTIME_SLACK = 2.0  # seconds: coarse timestamps on some filesystems


class RunJournal:
    """One run's marker; a context manager around everything the run writes.

    ``suspects`` are the store paths (relative, ``/``-separated) that earlier unfinished runs
    may have left incomplete on disk. Tell it which were checked or replaced (``cleared``).
    """

    def __init__(self, store: Store, *, checkpoint_seconds: float = CHECKPOINT_SECONDS) -> None:
        self.store = store
        self.dir = store.state_dir / MARKERS
        self.path = self.dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self.checkpoint_seconds = checkpoint_seconds
        self._last = 0.0
        self._lock = threading.Lock()
        self._cleared: set[str] = set()
        self.suspects: set[str] = set()
        self.began = 0.0

    def __enter__(self) -> RunJournal:
        self.suspects = recover(self.store)
        self.began = time.time()
        self._mark(self.began)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        flush_records()  # the integrity records of this run's files, synced with them
        sync_store(self.store)  # everything this run wrote is on disk now
        if self.suspects:  # checked by this run, or written again by it (and now synced)
            left = {s for s in self.suspects - self._cleared if not self._rewritten(s)}
            if left != self.suspects:
                _write_suspects(self.store, left)
        self.path.unlink(missing_ok=True)

    def _rewritten(self, rel: str) -> bool:
        try:
            # strictly after this run began: a coarse clock keeps a file suspect, never clears it
            return (self.store.root / rel).stat().st_mtime > self.began
        except OSError:
            return True  # gone: nothing left to suspect

    def is_suspect(self, path: Path) -> bool:
        """Whether an earlier unfinished run may have left ``path`` incomplete on disk."""
        return bool(self.suspects) and _relative(self.store, Path(path)) in self.suspects

    def cleared(self, path: Path) -> None:
        """A suspect was re-hashed and found right, or fetched again."""
        with self._lock:
            self._cleared.add(_relative(self.store, Path(path)))

    def committed(self) -> None:
        """A file was renamed into place: sync now and then, so a crash loses little."""
        now = time.monotonic()
        if now - self._last < self.checkpoint_seconds:
            return
        with self._lock:
            if now - self._last < self.checkpoint_seconds:
                return
            self._last = now
            began = time.time()
            flush_records()
            sync_store(self.store)
            self._mark(began)  # files older than this are on disk

    def _mark(self, began: float) -> None:
        self._last = time.monotonic()
        doc = json.dumps({"pid": os.getpid(), "since": began}) + "\n"
        write_text_atomic(self.path, doc, durable=True)  # before any file it vouches for


class Suspicion:
    """Read-only: which store files an unfinished run may have left incomplete on disk.

    Usable before the store lock is taken (planning, where no :class:`RunJournal` has recovered
    yet): the listed suspects, plus any file modified since the start of a run whose marker is
    still there.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.listed = load_suspects(store)
        self.since = _stale(store)[1]

    def __bool__(self) -> bool:
        return bool(self.listed) or self.since is not None

    def __call__(self, path: Path) -> bool:
        if not self:
            return False
        if self.since is not None:
            try:
                if Path(path).stat().st_mtime >= self.since:
                    return True
            except OSError:
                return False
        return _relative(self.store, Path(path)) in self.listed


def sync_store(store: Store) -> list[Path]:
    """Flush the store's filesystems to disk; return one folder per filesystem synced.

    ``syncfs`` (Linux) on the store's filesystem and on any other mounted within its first
    levels (edition, region, partition); ``sync`` of every filesystem where there is no
    ``syncfs``, or where it fails (then the list is empty).
    """
    syncfs = _libc("syncfs", "c_int")
    folders = _filesystems(store.root) if syncfs is not None else []
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            break
        try:
            if syncfs(fd) != 0:
                break
        finally:
            os.close(fd)
    else:
        if folders:
            return folders
    os.sync()
    return []


WRITEBACK_STEP = 8 << 20  # bytes written to a file between two writeback requests


def start_writeback(fd: int, offset: int, length: int = 0) -> None:
    """Ask the kernel to start writing ``length`` bytes of ``fd`` from ``offset`` (0: to the
    end) to disk, without waiting: the durability still comes from :func:`sync_store`. Linux
    only; elsewhere, and on a file that does not support it, nothing happens."""
    fn = _libc("sync_file_range", "c_int", "c_int64", "c_int64", "c_uint")
    if fn is not None:
        fn(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; an error (ESPIPE, EINVAL) is ignored


def _filesystems(root: Path, depth: int = 3) -> list[Path]:
    """One folder per device among ``root`` and its folders ``depth`` levels down, links to
    folders followed (an edition or region folder linked to another disk holds files too)."""
    seen: dict[int, Path] = {}
    level = [root]
    for down in range(depth, -1, -1):
        below = []
        for folder in level:
            try:
                seen.setdefault(os.stat(folder).st_dev, folder)
                if down:
                    with os.scandir(folder) as it:
                        below += [Path(e.path) for e in it if e.is_dir()]
            except OSError:
                continue
        level = below
    return list(seen.values())


@cache
def _libc(name: str, *argtypes: str) -> Any:
    """libc's ``name`` with its argument types (ctypes names), looked up on first use; None
    where there is none (macOS has no ``syncfs`` nor ``sync_file_range``)."""
    import ctypes

    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = [getattr(ctypes, a) for a in argtypes]
    return fn


def _relative(store: Store, path: Path) -> str:
    for root in (store.root, store.root.resolve()):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def recover(store: Store) -> set[str]:
    """Turn the markers of runs that never finished into suspects; return all suspects.

    Call with the store lock held: every marker found then belongs to a run that is over.
    """
    markers, since = _stale(store)
    suspects = load_suspects(store)
    if since is None:
        return suspects
    skip = {store.state_dir.resolve(), store.manifest_root.resolve()}  # written with fsync
    for folder, dirs, files in os.walk(store.root):
        here = Path(folder)
        if here.resolve() in skip:
            dirs[:] = []
            continue
        for name in files:
            p = here / name
            try:
                if p.stat().st_mtime >= since:
                    suspects.add(p.relative_to(store.root).as_posix())
            except OSError:
                continue
    _write_suspects(store, suspects)  # durable before the markers go
    for m in markers:
        m.unlink(missing_ok=True)
    return suspects


def load_suspects(store: Store) -> set[str]:
    try:
        text = (store.state_dir / SUSPECTS).read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    return {line for line in text.splitlines() if line}


def _write_suspects(store: Store, suspects: set[str]) -> None:
    path = store.state_dir / SUSPECTS
    if suspects:
        write_text_atomic(path, "".join(f"{s}\n" for s in sorted(suspects)), durable=True)
    else:
        path.unlink(missing_ok=True)


def _stale(store: Store) -> tuple[list[Path], float | None]:
    """The run markers left in the store, and the time from which their runs' files are
    suspect (None: no marker)."""
    markers = sorted((store.state_dir / MARKERS).glob("*.json"))
    if not markers:
        return markers, None
    return markers, min(_since(m) for m in markers) - MTIME_SLACK


def _since(marker: Path) -> float:
    try:
        return float(json.loads(marker.read_text())["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0  # unreadable: trust nothing that run may have written
