"""The two checksums the Hub publishes, computed one way everywhere.

``sha256`` is the content hash of LFS files (tree ``lfs.oid``); ``git-sha1`` is the git blob id
of regular files (tree ``oid``): sha1 of ``b"blob <size>\\0"`` followed by the content. Downloads,
verify, the catalog, export and ``m3leo serve`` all hash through these functions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

READ_SIZE = 1 << 20  # local reads (hashing a part or a finished file)


def new_hasher(kind: str, size: int) -> Any:
    """A hashlib object for ``kind``; git-sha1 is seeded with the ``blob <n>\\0`` header."""
    if kind == "sha256":
        return hashlib.sha256()
    if kind == "git-sha1":
        h = hashlib.sha1()
        h.update(b"blob %d\0" % size)
        return h
    raise ValueError(f"unknown checksum kind {kind!r}")


def hash_file(path: Path, kind: str, size: int, limit: int | None = None) -> Any:
    """Hash the first ``limit`` bytes of ``path`` (all of it by default)."""
    h = new_hasher(kind, size)
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    left = limit
    with Path(path).open("rb", buffering=0) as fh:
        while left is None or left > 0:
            n = fh.readinto(view if left is None or left >= len(buf) else view[:left])
            if not n:
                break
            h.update(view[:n])
            if left is not None:
                left -= n
    return h


def file_hexdigest(path: Path, kind: str = "sha256") -> str:
    """Hex digest of a whole file (its size is read from the file)."""
    p = Path(path)
    return str(hash_file(p, kind, p.stat().st_size).hexdigest())
