"""A loopback server that answers byte for byte what a test scripts: the hostile tests' peer
(tests/hostile/). Every connection is served by its own thread; nothing here parses more HTTP
than it takes to find where a request ends."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Scripted:
    """The n-th request on any connection gets ``answers[n]`` (the last one once they run out):
    bytes sent in ``piece``-sized writes, or a function that writes to the socket itself.
    ``close_after`` closes the connection after that answer."""

    answers: list[bytes | Callable[[socket.socket], None]]
    piece: int = 0
    pause: float = 0.0  # seconds between two pieces (a slow link)
    close_after: set[int] = field(default_factory=set)
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    url: str = ""


@contextmanager
def scripted(script: Scripted) -> Iterator[Scripted]:
    lock = threading.Lock()

    def serve(conn: socket.socket) -> None:
        with lock:
            script.connections += 1
        buf = b""
        with conn:
            while True:
                got = _read_request(conn, buf)
                if got is None:
                    return
                request, buf = got
                with lock:
                    n = len(script.requests)
                    script.requests.append(request)
                answer = script.answers[min(n, len(script.answers) - 1)]
                if callable(answer):  # the script writes what it likes, then the connection ends
                    answer(conn)
                    return
                step = script.piece or len(answer) or 1
                for i in range(0, len(answer), step):  # a client that gives up ends the thread
                    conn.sendall(answer[i : i + step])
                    if script.pause:
                        time.sleep(script.pause)
                if n in script.close_after:
                    conn.shutdown(socket.SHUT_RDWR)
                    return

    with _listen(serve) as url:
        script.url = url
        yield script


def _read_request(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    """One whole request (head and body) from ``conn``, and the bytes after it."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += conn.recv(65536)
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


@contextmanager
def mitm(upstream: str, rule: Callable[[bytes], object]) -> Iterator[str]:
    """A malicious mirror in front of ``upstream`` (``http://host:port``): each request is
    forwarded (one upstream connection per request, answer relayed whole) unless
    ``rule(request)`` returns bytes to answer instead, or a function that writes to the
    client's socket itself; the client connection then closes.
    Yields the mirror's URL."""
    host, _, port = upstream.removeprefix("http://").partition(":")

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                got = _read_request(conn, buf)
                if got is None:
                    return
                request, buf = got
                forged = rule(request)
                if callable(forged):  # the rule writes what it likes itself
                    forged(conn)
                    return
                if forged is not None:
                    conn.sendall(forged)
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                head, _, body = request.partition(b"\r\n\r\n")
                lines = [
                    ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")
                ]
                with socket.create_connection((host, int(port))) as up:
                    up.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body)
                    while data := up.recv(65536):
                        conn.sendall(data)
                return  # the answer ran to the upstream's close: so does this connection

    with _listen(serve) as url:
        yield url


@contextmanager
def _listen(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback listener whose every connection is served by ``serve`` on a thread of its
    own (a client that goes away mid-answer ends that thread quietly). Yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run(conn: socket.socket) -> None:
        try:
            serve(conn)
        except OSError:
            pass

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=run, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
