"""Whole-answer deadlines for urllib3's connections: after connect, the socket is wrapped so
that every read gets ``min(per-read timeout, time left)``. urllib3 and ``http.client`` read
through ``makefile``, so the deadline holds inside the head parser and the chunk decoder too:
a server trickling a byte a second, or sending endless trailers, cannot hold a worker forever.
No watchdog thread: download processes fork only from a single-thread parent."""

from __future__ import annotations

import functools
import time
from typing import Any

from .transport import state as _state


class DeadlineSocket:
    """A connected socket whose every read gets ``min(per-read timeout, time left)``.

    urllib3 and ``http.client`` read through ``makefile``; the file object made here reads
    through this wrapper, so the deadline holds inside the head parser and the chunk decoder
    too. Everything else is the socket's own.
    """

    __slots__ = ("_sock", "_conn", "_timeout", "_set")

    def __init__(self, sock: Any, conn: Any) -> None:
        self._sock, self._conn = sock, conn
        self._timeout = self._set = sock.gettimeout()  # asked for; set on the socket now

    def _arm(self) -> None:
        left = self._conn.deadline - time.monotonic()
        if left <= 0:
            _state.deadline = True
            raise TimeoutError("the answer took longer than its deadline")
        want = left if self._timeout is None or left < self._timeout else self._timeout
        if want != self._set:  # usually the per-read timeout, already set: no system call
            self._sock.settimeout(want)
            self._set = want

    def recv_into(self, buf: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        try:
            return int(self._sock.recv_into(buf, nbytes, flags))
        except TimeoutError:
            if self._conn.deadline <= time.monotonic():
                _state.deadline = True
            raise

    def recv(self, n: int, flags: int = 0) -> bytes:
        self._arm()
        return bytes(self._sock.recv(n, flags))

    def settimeout(self, value: float | None) -> None:
        self._timeout = self._set = value
        self._sock.settimeout(value)

    def makefile(self, mode: str = "r", buffering: int | None = None, **_: Any) -> Any:
        import io
        import socket

        # the socket stays open while the file reads (http.client's will_close relies on that
        # count); the file reads through this wrapper's recv_into, with its deadline
        self._sock._io_refs += 1
        wrapper: Any = self
        raw = socket.SocketIO(wrapper, "rb")
        if buffering == 0:
            return raw
        return io.BufferedReader(raw, io.DEFAULT_BUFFER_SIZE if not buffering else buffering)

    def _decref_socketios(self) -> None:
        self._sock._decref_socketios()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@functools.cache
def connection_classes() -> tuple[Any, Any]:
    """urllib3's pool and connection classes with the deadline socket put in after connect."""
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class _Timed:
        deadline = float("inf")
        sock: Any

        def request(self, *args: Any, **kw: Any) -> Any:
            # the head's budget starts as the request goes out (Wire.send set it, this thread)
            self.deadline = getattr(_state, "head_deadline", float("inf"))
            return super().request(*args, **kw)  # type: ignore[misc]

        def connect(self) -> None:
            super().connect()  # type: ignore[misc]
            if self.sock is not None and not isinstance(self.sock, DeadlineSocket):
                self.sock = DeadlineSocket(self.sock, self)

    class TimedHTTPConnection(_Timed, HTTPConnection):
        pass

    class TimedHTTPSConnection(_Timed, HTTPSConnection):
        pass

    class TimedHTTPPool(HTTPConnectionPool):
        ConnectionCls = TimedHTTPConnection

    class TimedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = TimedHTTPSConnection

    return TimedHTTPPool, TimedHTTPSPool
