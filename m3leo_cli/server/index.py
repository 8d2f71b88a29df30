"""What a served repo holds: files, their git/LFS object ids and a commit id derived from them.

The index is built from the folder on first use and rebuilt on demand (cheaply: hashes are cached
by ``(path, size, mtime_ns)``, so only new or changed files are read again). The resolve path
never walks the folder; it looks files up in the current snapshot.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checksum import hash_file
from .hashcache import HashCache

# Files stored with LFS on the Hub (M3LEO chips and shards), plus anything large.
LFS_SUFFIXES = (".tif", ".tiff", ".nc", ".parquet")
LFS_MIN_SIZE = 10 * 1024 * 1024
# Top-level folders that are local bookkeeping, never repo content.
SKIP_DIRS = frozenset({".git", ".cache"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: sha1(b"blob <len>\\0" + data)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer text that git stores instead of an LFS file's content."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def is_lfs(path: str, size: int) -> bool:
    return path.lower().endswith(LFS_SUFFIXES) or size > LFS_MIN_SIZE


def valid_repo_part(name: str) -> bool:
    """An org or repo name as the Hub allows it (no dots-only names, no separators)."""
    return bool(_NAME_RE.match(name)) and ".." not in name


def _hash_file(path: str, size: int, lfs: bool) -> str:
    """sha256 of the content for LFS files, else the git blob sha1 (streamed)."""
    return str(hash_file(Path(path), "sha256" if lfs else "git-sha1", size).hexdigest())


@dataclass(frozen=True)
class Source:
    """A folder whose files make up (part of) a repo; ``keep`` picks which repo paths belong."""

    folder: Path
    keep: Callable[[str], bool] | None = None

    def holds(self, path: str) -> bool:
        return self.keep is None or self.keep(path)


@dataclass(frozen=True)
class FileEntry:
    path: str  # repo path, slash-separated
    abspath: str  # real path on disk (inside the served root)
    size: int
    mtime_ns: int
    oid: str  # git blob sha1 (of the pointer for LFS files)
    sha256: str | None  # LFS files only
    pointer_size: int | None

    @property
    def etag(self) -> str:
        return self.sha256 or self.oid

    def tree_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "type": "file",
            "oid": self.oid,
            "size": self.size,
            "path": self.path,
        }
        if self.sha256 is not None:
            d["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return d


@dataclass(frozen=True)
class Snapshot:
    """One immutable state of a repo; replaced whole when the folder changes."""

    repo_id: str
    commit: str
    files: dict[str, FileEntry]
    dirs: dict[str, str]  # directory repo path -> deterministic oid
    children: dict[str, list[str]]  # directory ("" = root) -> sorted child paths
    last_modified_ns: int
    ordered: list[str] = field(default_factory=list)  # every path, sorted
    memo: dict[object, Any] = field(default_factory=dict, compare=False)  # answers, per snapshot

    def is_dir(self, path: str) -> bool:
        return path == "" or path in self.dirs

    def entry_json(self, path: str) -> dict[str, object]:
        if path in self.files:
            return self.files[path].tree_json()
        return {"type": "directory", "oid": self.dirs[path], "size": 0, "path": path}

    def listing(self, path: str, recursive: bool) -> list[str]:
        """Paths under directory ``path`` (sorted); every level when ``recursive``."""
        if not recursive:
            return self.children.get(path, [])
        if path == "":
            return self.ordered
        key = ("listing", path)
        if key not in self.memo:  # every page of a listing asks again
            prefix = path + "/"
            self.memo[key] = [p for p in self.ordered if p.startswith(prefix)]
        return self.memo[key]  # type: ignore[no-any-return]


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


class RepoIndex:
    """The current snapshot of one repo, with a hash cache that survives rescans.

    A repo is usually one folder; an m3leo store's full edition is two (the region's CSVs and
    the kept shards), hence ``sources``. Files are served only while they stay inside
    ``root_real``: a symlink out of it, or a hard link (a second name that may be anywhere), is
    left out and reported once through ``warn``.
    """

    def __init__(
        self,
        repo_id: str,
        sources: Sequence[Source],
        root_real: str,
        hashes: HashCache | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.repo_id = repo_id
        self.sources = tuple(sources)
        self.root_real = root_real
        self._warn = warn or (lambda message: None)
        self._lock = threading.Lock()
        self._hashes = hashes if hashes is not None else HashCache()
        self._snapshot: Snapshot | None = None
        self._last_walk: dict[str, tuple[str, int, int]] = {}
        self._scan_started = 0

    @property
    def folder(self) -> Path:
        return self.sources[0].folder

    def may_hold(self, path: str) -> bool:
        """Whether ``path`` (already checked safe) is a file in one of the sources now."""
        return any(s.holds(path) and os.path.isfile(s.folder / path) for s in self.sources)

    def snapshot(self) -> Snapshot:
        snap = self._snapshot
        return snap if snap is not None else self.rescan()

    def rescan(self) -> Snapshot:
        """Walk the folder, hash what is new or changed, publish a new snapshot.

        Callers that queue behind a scan which started after they arrived reuse its result, so
        a burst of clients costs one walk, not one each.
        """
        arrived = time.monotonic_ns()
        with self._lock:
            if self._snapshot is not None and self._scan_started >= arrived:
                return self._snapshot
            self._scan_started = time.monotonic_ns()
            found = self._walk()
            if self._snapshot is not None and found == self._last_walk:
                return self._snapshot  # nothing moved: same snapshot, same commit
            previous = self._snapshot.files if self._snapshot is not None else {}
            files: dict[str, FileEntry] = {}
            for rel, (real, size, mtime_ns) in found.items():
                old = previous.get(rel)
                if old is not None and (old.abspath, old.size, old.mtime_ns) == (
                    real,
                    size,
                    mtime_ns,
                ):
                    files[rel] = old
                    continue
                lfs = is_lfs(rel, size)
                digest = self._hashes.get(real, size, mtime_ns, lfs)
                if digest is None:
                    try:
                        digest = _hash_file(real, size, lfs)
                    except OSError:
                        continue  # vanished or unreadable while scanning: not served
                    self._hashes.put(real, size, mtime_ns, lfs, digest)
                if lfs:
                    pointer = lfs_pointer(digest, size)
                    files[rel] = FileEntry(
                        rel, real, size, mtime_ns, git_blob_sha1(pointer), digest, len(pointer)
                    )
                else:
                    files[rel] = FileEntry(rel, real, size, mtime_ns, digest, None, None)
            self._hashes.save()
            self._last_walk = found
            self._snapshot = _build_snapshot(self.repo_id, files)
            return self._snapshot

    def _walk(self) -> dict[str, tuple[str, int, int]]:
        """repo path -> (real path, size, mtime_ns) of every regular file that stays in root."""
        out: dict[str, tuple[str, int, int]] = {}
        for source in self.sources:
            for rel, found in self._walk_one(source).items():
                out.setdefault(rel, found)
        return out

    def _walk_one(self, source: Source) -> dict[str, tuple[str, int, int]]:
        out: dict[str, tuple[str, int, int]] = {}
        stack: list[tuple[str, str]] = [(str(source.folder), "")]
        seen_dirs: set[str] = set()
        while stack:
            dir_path, prefix = stack.pop()
            try:
                real_dir = os.path.realpath(dir_path)
                if real_dir in seen_dirs or not _inside(real_dir, self.root_real):
                    continue
                seen_dirs.add(real_dir)
                entries = list(os.scandir(dir_path))
            except OSError:
                continue
            for e in entries:
                rel = prefix + e.name
                if "\\" in e.name or "\n" in e.name:
                    continue
                try:
                    if e.is_dir():  # follows symlinks; the realpath check above bounds it
                        if not (prefix == "" and e.name in SKIP_DIRS):
                            stack.append((e.path, rel + "/"))
                        continue
                    if not e.is_file() or not source.holds(rel):
                        continue
                    real = os.path.realpath(e.path) if e.is_symlink() else e.path
                    if e.is_symlink() and not _inside(real, self.root_real):
                        self._warn(f"not serving {e.path}: a symlink to {real}, outside the folder")
                        continue  # a link that points out of the served root is never served
                    st = e.stat()
                except OSError:
                    continue
                if st.st_nlink > 1:
                    self._warn(
                        f"not serving {e.path}: a hard link ({st.st_nlink} names for one file; "
                        "the others may be outside the folder)"
                    )
                    continue
                out[rel] = (real, st.st_size, st.st_mtime_ns)
        return out


def open_served(entry: FileEntry, root_real: str) -> int:
    """A read-only descriptor on ``entry``'s file, checked again at the moment it is opened.

    The index checked the path when it walked the folder; since then the file could have been
    replaced by a symlink, given a second name, or a folder on its path swapped for a link out.
    Raises ``OSError`` for any of these (the caller answers 404).
    """
    fd = os.open(entry.abspath, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            raise OSError(f"{entry.abspath} is no longer a plain file with one name")
        where = f"/proc/self/fd/{fd}"
        if os.path.islink(where) and not _inside(os.readlink(where), root_real):
            raise OSError(f"{entry.abspath} now leads out of the served folder")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _build_snapshot(repo_id: str, files: dict[str, FileEntry]) -> Snapshot:
    children: dict[str, set[str]] = {"": set()}
    for path in files:
        parts = path.split("/")
        parent = ""
        for i in range(len(parts)):
            cur = "/".join(parts[: i + 1])
            children.setdefault(parent, set()).add(cur)
            if i < len(parts) - 1:
                children.setdefault(cur, set())
            parent = cur
    dirs: dict[str, str] = {}
    # Directory oids: sha1 over the sorted (name, oid) of their children, deepest first.
    for d in sorted((d for d in children if d), key=lambda s: -s.count("/")):
        h = hashlib.sha1(b"tree\x00")
        for c in sorted(children[d]):
            h.update(f"{c.rsplit('/', 1)[-1]} {files[c].oid if c in files else dirs[c]}\n".encode())
        dirs[d] = h.hexdigest()
    commit = hashlib.sha1(f"m3leo-serve {repo_id}\n".encode())
    for path in sorted(files):
        commit.update(f"{files[path].oid} {files[path].sha256 or ''} {path}\n".encode())
    last = max((f.mtime_ns for f in files.values()), default=0)
    return Snapshot(
        repo_id=repo_id,
        commit=commit.hexdigest(),
        files=files,
        dirs=dirs,
        children={k: sorted(v) for k, v in children.items()},
        last_modified_ns=last,
        ordered=sorted(set(files) | set(dirs)),
    )
