"""The listening socket of one origin, with a bounded pool of worker threads.

The stdlib's ``ThreadingHTTPServer`` starts a thread per connection with no limit: 2,000 idle
connections were 2,003 threads. Here at most ``max_connections`` connections are served at
once, each by one of at most as many worker threads (started when needed, then reused); a
connection beyond the cap is answered ``503`` with ``Retry-After`` straight from the accepting
thread and closed, so a flood of connections costs no thread and no memory. An idle keep-alive
connection holds its worker until the handler's idle timeout ends it, and a request that is
read too slowly is ended by the :class:`Watchdog`.
"""

from __future__ import annotations

import json
import queue
import socket
import sys
import threading
import time
from http.server import HTTPServer
from typing import Any

from .base import ServerState

# Per origin (the Hub port and the content port each have their own). The download tests and
# `m3leo download` open up to 64 connections per host; a cluster of jobs shares the mirror.
DEFAULT_MAX_CONNECTIONS = 256
# What a client that met the cap is told to wait before it tries again (seconds).
BUSY_RETRY_AFTER = 1


def busy_answer(limit: int) -> bytes:
    """The whole ``503`` sent to a connection beyond the cap (Hub-style JSON and headers)."""
    msg = f"m3leo serve is at its connection limit ({limit}); retry later"
    body = json.dumps({"error": msg}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Server: m3leo-serve\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {BUSY_RETRY_AFTER}\r\n"
        f"X-Error-Message: {msg}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class Watchdog:
    """Ends connections that take too long over a request: one thread per origin, not a timer
    per request.

    A socket timeout bounds each read, not a request: a client that sends its head one byte
    every minute would hold a worker for ever (and ``max_connections`` such clients, the whole
    server). A handler arms a deadline when a request starts and disarms it once the request is
    read; past the deadline the watchdog shuts the socket down, the handler's read returns
    nothing and the connection ends.
    """

    def __init__(self, origin: str) -> None:
        self._origin = origin
        self._due: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, conn: socket.socket, seconds: float) -> None:
        with self._lock:
            self._due[conn] = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"m3leo-serve-{self._origin}-watchdog", daemon=True
                )
                self._thread.start()

    def disarm(self, conn: socket.socket) -> None:
        with self._lock:
            self._due.pop(conn, None)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            with self._lock:
                late = [c for c, t in self._due.items() if t <= now]
                for conn in late:
                    del self._due[conn]
            for conn in late:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Pool:
    """Worker threads that serve one connection each at a time; never more than ``size``."""

    def __init__(self, server: OriginServer, size: int) -> None:
        self.size = size
        self._server = server
        self._jobs: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._open: set[Any] = set()  # the connections accepted and not yet closed
        self.active = 0  # how many

    def submit(self, request: Any, client_address: Any) -> bool:
        """Queue a connection for a worker; False (nothing queued) when ``size`` are active."""
        with self._cond:
            if self.active >= self.size:
                return False
            self.active += 1
            self._open.add(request)
            # Every worker is busy with another connection, or one is about to be free: the
            # queue is never longer than the number of workers that will take from it.
            spawn = self.active > len(self._threads)
            if spawn:
                name = f"m3leo-serve-{self._server.origin}-{len(self._threads) + 1}"
                t = threading.Thread(target=self._work, name=name, daemon=True)
                self._threads.append(t)
        self._jobs.put((request, client_address))
        if spawn:
            t.start()
        return True

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            request, client_address = job
            try:
                self._server.finish_request(request, client_address)
            except Exception:
                self._server.handle_error(request, client_address)
            finally:
                self._server.shutdown_request(request)
                with self._cond:
                    self.active -= 1
                    self._open.discard(request)
                    self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no connection is being served; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """End every open connection (idle keep-alive ones would linger) and every worker."""
        with self._cond:
            threads = list(self._threads)
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _ in threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))


class OriginServer(HTTPServer):
    """One origin's listening socket; its connections are served by a bounded :class:`_Pool`."""

    request_queue_size = 256  # the listen backlog
    allow_reuse_address = True
    hub: ServerState  # the HubServer that owns it
    origin = "hub"

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int) -> None:
        self.pool = _Pool(self, max_connections)  # first: a failed bind closes the server
        self.watchdog = Watchdog(self.origin)
        self._busy = busy_answer(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.pool.submit(request, client_address):
            self._refuse(request)

    def _refuse(self, request: socket.socket) -> None:
        """Answer ``503`` without blocking the accepting thread, then close."""
        try:
            request.setblocking(False)
            request.send(self._busy)  # a fresh socket's send buffer takes it whole
            request.shutdown(socket.SHUT_WR)
            while request.recv(65536):  # what the client already sent: read, or the close
                pass  # would reset the connection before it reads the answer
        except OSError:
            pass
        finally:
            request.close()

    def server_close(self) -> None:
        super().server_close()
        self.pool.close()
        self.watchdog.close()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up or resets is routine; anything else is a bug and is shown."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]
