"""Output files that are either complete or absent: ``.part`` names, rename, disk-full handling."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..checksum import file_hexdigest
from ..errors import DiskFullError
from ..store.layout import open_in_folder

PART = ".part"
_NEW = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)  # O_EXCL|O_NOFOLLOW added
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def part_path(final: Path) -> Path:
    return final.with_name(final.name + PART)


def sha256_file(path: Path) -> str:
    return file_hexdigest(path, "sha256")


def disk_full(path: Path, exc: OSError) -> DiskFullError:
    return DiskFullError(
        f"disk full while writing {path} ({exc.strerror or exc})",
        "free space (or choose another --out) and re-run the same command: finished files "
        "are kept and the interrupted one is redone",
    )


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in _NO_SPACE


def discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def writing(final: Path) -> Iterator[BinaryIO]:
    """Open ``final.part`` for writing; on success the caller calls :func:`commit`.

    Any error removes the ``.part`` file; a full disk becomes DiskFullError.
    """
    part = part_path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    discard(part)  # a stale part (or a link planted there) is never appended to
    try:
        with os.fdopen(open_in_folder(part, _NEW, 0o666), "wb") as fh:  # never through a link
            yield fh
    except OSError as exc:
        discard(part)
        if is_disk_full(exc):
            raise disk_full(final, exc) from None
        raise
    except BaseException:
        discard(part)
        raise


def part_info(final: Path) -> dict[str, int | str]:
    """sha256 and size of the written ``final.part`` (computed where it was written)."""
    part = part_path(final)
    return {"sha256": sha256_file(part), "size": part.stat().st_size}


def promote(final: Path) -> None:
    """Rename the finished ``final.part`` into place."""
    os.replace(part_path(final), final)


def commit(final: Path) -> dict[str, int | str]:
    """Checksum ``final.part`` and rename it into place."""
    info = part_info(final)
    promote(final)
    return info


class HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through (no seeking)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:  # the underlying file is closed by its owner
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def info(self) -> dict[str, int | str]:
        return {"sha256": self._hash.hexdigest(), "size": self.size}


def write_bytes_atomic(final: Path, data: bytes) -> None:
    """Small files (metadata, markers): write a unique temp file, then replace."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}{PART}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, final)
    except OSError as exc:
        discard(tmp)
        if is_disk_full(exc):
            raise disk_full(final, exc) from None
        raise
