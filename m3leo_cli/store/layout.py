"""The local store: where every file lives, and the guard that keeps remote paths inside it.

Layout (mirrors the Hub so M3LEO's own loaders read it unmodified)::

    <data_dir>/<edition>/<region>/<repo path>          tiles, split CSVs, GeoJSON
    <data_dir>/manifest/edition=<e>/region=<r>/manifest.parquet
    <data_dir>/.m3leo/                                 locks, reports, caches
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import UnsafePathError

Locate = Callable[[str, str, str], Path | None]
"""``locate(edition, region, path)``: where a listed tile's file is (or will be), or None."""

NAME_MAX = 255  # bytes in one path component (Linux, macOS)
PATH_MAX = 3072  # bytes in a repo path, leaving room under the 4096 of PATH_MAX for the store


def safe_join(base: Path, rel: str, resolved: dict[Path, Path] | None = None) -> Path:
    """Join a remote, slash-separated path under ``base``; refuse anything that escapes it.

    ``resolved`` caches resolved folders across calls (a symlinked folder can still not take
    a file outside the store): joining the paths of a whole plan costs one ``realpath`` per
    folder, not one per file.
    """
    if not rel or "\x00" in rel or "\\" in rel:
        raise UnsafePathError(f"refused unsafe remote path {rel!r}")
    if len(rel.encode("utf-8", "surrogatepass")) > PATH_MAX or any(
        len(part.encode("utf-8", "surrogatepass")) > NAME_MAX for part in rel.split("/")
    ):
        raise UnsafePathError(
            f"refused remote path {rel[:60]!r}...: longer than a file system allows"
        )
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("..", "") for part in rel.split("/")) or rel.startswith("~"):
        raise UnsafePathError(f"refused remote path {rel!r}: it escapes the store")
    out = base.joinpath(*p.parts)
    cache = {} if resolved is None else resolved
    try:
        target = _resolve(out.parent, cache) / out.name
        if target.is_symlink():  # a link in the store's place must point inside it too
            target = target.resolve()
        target.relative_to(_resolve(base, cache))
    except ValueError:
        raise UnsafePathError(f"refused remote path {rel!r}: it escapes the store") from None
    except OSError as exc:  # too long for this file system, a loop of links, ...
        raise UnsafePathError(f"refused remote path {rel[:60]!r}: {exc.strerror}") from None
    return out


def _resolve(path: Path, cache: dict[Path, Path]) -> Path:
    hit = cache.get(path)
    if hit is None:
        hit = cache[path] = path.resolve()
    return hit


@dataclass(frozen=True)
class Store:
    root: Path
    _resolved: dict[Path, Path] = field(default_factory=dict, compare=False, repr=False)

    def region_dir(self, edition: str, region: str) -> Path:
        return self.root / edition / region

    def local_path(self, edition: str, region: str, repo_path: str) -> Path:
        """Where the file at ``repo_path`` of the ``edition``/``region`` repo lives locally."""
        return safe_join(self.region_dir(edition, region), repo_path, self._resolved)

    @property
    def manifest_root(self) -> Path:
        return self.root / "manifest"

    def manifest_path(self, edition: str, region: str) -> Path:
        return self.manifest_root / f"edition={edition}" / f"region={region}" / "manifest.parquet"

    @property
    def state_dir(self) -> Path:
        return self.root / ".m3leo"


def write_text_atomic(path: Path, text: str, *, durable: bool = False) -> None:
    """Replace a small state file (JSON caches, records) all at once: readers never see half.

    The temp name is unique per process and thread, so concurrent writers never share one.
    ``durable``: the bytes and the rename are on disk when this returns (fsync of the file,
    then of its folder), for the records a crash must not lose (run markers, suspects).
    """
    import os
    import threading

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def open_in_folder(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never writes through a link, and makes the file's folder when it is
    missing (the folder's first file pays for the mkdir, the thousands after it do not).

    ``O_NOFOLLOW`` always: a symlink planted at a part or tile path is refused (``ELOOP``),
    never followed out of the store. A file opened with ``O_CREAT|O_TRUNC`` starts anew: it is
    created with ``O_EXCL``, and whatever stood at its name (a link, a stale part) is removed
    first, so the bytes always go to a new inode that only this store names.
    """
    import os

    flags |= getattr(os, "O_NOFOLLOW", 0)
    fresh = bool(flags & os.O_CREAT and flags & os.O_TRUNC)
    if fresh:
        flags = (flags & ~os.O_TRUNC) | os.O_EXCL
    try:
        return _open_new(path, flags, mode) if fresh else os.open(path, flags, mode)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _open_new(path, flags, mode) if fresh else os.open(path, flags, mode)


def _open_new(path: Path, flags: int, mode: int) -> int:
    import os

    try:
        return os.open(path, flags, mode)
    except FileExistsError:
        os.unlink(path)  # a link is removed, never written through; a folder raises here
        return os.open(path, flags, mode)


def is_regular_file(path: Path) -> bool:
    """A plain file at ``path`` itself (not a link to one, not a folder)."""
    import stat

    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a rename into it) durable; best effort where a filesystem or a
    platform cannot fsync a folder."""
    import os

    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
