"""One writer per store: an advisory ``flock`` on ``<data_dir>/.m3leo/lock``.

Two runs that would write the same store never overlap: the second one either waits
(``wait=True``) or fails at once with :class:`StoreLockedError` naming the pid and host that
hold the lock. The lock is released by the kernel when the holder exits, even on ``kill -9``.

Caveat: ``flock`` is only as good as the filesystem. On local disks it is exact. On NFS it is
emulated with POSIX locks by Linux clients (works when the server supports NLM/NFSv4 locks);
on Lustre it is only honoured when mounted with ``-o flock`` and on some mounts (``localflock``,
GPFS, BeeGFS without global locks) it silently succeeds on every node. On such shared
filesystems run one download per store at a time, or give each node its own ``--data-dir``.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import StoreLockedError
from .layout import Store


def lock_path(store: Store) -> os.PathLike[str]:
    return store.state_dir / "lock"


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 512).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def store_lock(
    store: Store, *, wait: bool = False, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the store's writer lock for the duration of the ``with`` block."""
    import fcntl

    store.state_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(store)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _holder(fd)
            if not wait:
                raise StoreLockedError(
                    f"the store {store.root} is locked by {holder}",
                    "another m3leo run is writing this store; wait for it, or pass --wait",
                ) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        info = f"pid {os.getpid()} on {socket.gethostname()} since " + time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode() + b"\n", 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
