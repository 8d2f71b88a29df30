"""The local store: where every file lives, and the guard that keeps remote paths inside it.

Layout (mirrors the Hub so M3LEO's own loaders read it unmodified)::

    <data_dir>/<edition>/<region>/<repo path>          tiles, split CSVs, GeoJSON
    <data_dir>/manifest/edition=<e>/region=<r>/manifest.parquet
    <data_dir>/.m3leo/                                 locks, reports, caches
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import UnsafePathError


def safe_join(base: Path, rel: str, resolved: dict[Path, Path] | None = None) -> Path:
    """Join a remote, slash-separated path under ``base``; refuse anything that escapes it.

    ``resolved`` caches resolved folders across calls (a symlinked folder can still not take
    a file outside the store): joining the paths of a whole plan costs one ``realpath`` per
    folder, not one per file.
    """
    if not rel or "\x00" in rel or "\\" in rel:
        raise UnsafePathError(f"refused unsafe remote path {rel!r}")
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
    """``os.open`` that makes the file's folder when it is missing: the folder's first file pays
    for the mkdir, the thousands after it do not (downloads and unpacks write many per folder)."""
    import os

    try:
        return os.open(path, flags, mode)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, mode)


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
