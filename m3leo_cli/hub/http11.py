"""HTTP/1.1 on one socket: a request out, an answer's status and headers in, its body read
straight into the caller's buffer.

Why not the standard library's ``http.client`` (which :mod:`.wire` used before): per answer it
parses the headers with the ``email`` package and reads the body through a buffered file
object. Here the status line and headers are split from one buffer with ``bytes`` methods and
the body goes from the socket into the caller's buffer with ``recv_into``, plain TCP and TLS
alike: against nginx on this project's 2-core machine, 967 files/s where ``http.client`` did
836 (a resolve and a content GET per file, written and sha256-hashed, 16 threads:
benchmarks/bench_engines.py, docs/benchmarks.md). Over TLS the gain is small (1.00-1.08x):
``ssl`` hands over one 16 KB record per read, whichever engine asks.

What it speaks (RFC 9112, client side, no pipelining): ``Content-Length``, ``chunked`` and
read-until-close bodies; no body for ``HEAD``, 1xx, 204 and 304; 1xx answers skipped;
keep-alive unless ``Connection: close`` (HTTP/1.0: unless not asked for); ``CONNECT`` tunnels
through a proxy. A body is never decoded: requests ask for ``identity``. Strict where laxness
would let one answer's bytes pass for another's (docs/design.md, "Why not httpx on the Hub
path").
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any
from urllib.parse import quote

HEAD_MAX = 65536  # bytes of status line and headers an answer may have
LINE_MAX = 65536  # bytes of a chunk-size line or trailer line
RECV = 65536  # bytes asked of the socket when filling the connection's own buffer
FILL_SECONDS = 0.25  # a read that has bytes returns after this, full or not (progress, Ctrl-C)
MAX_INFORMATIONAL = 8  # 1xx answers skipped before the real one, at most
_OWS = " \t"  # the whitespace HTTP allows around values (not Python's wider idea of it)
_DIGITS = re.compile(r"[0-9]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"  # kept as they are: a target already encoded stays so
_JOINED = frozenset({"link"})  # repeated, these are one list; other names keep their first value


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 answer (or not the one announced)."""


class Disconnected(ProtocolError):
    """The connection ended before the first byte of an answer: a keep-alive connection the
    server had already closed (the request is safe to send again on a fresh one)."""


class BodyEnded(ProtocolError):
    """The connection ended before the body announced by the headers did."""


class Connection:
    """One TCP (or TLS) connection to a host, or to a proxy, and the answer being read on it."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float | None,
        context: Any = None,
        tunnel: tuple[str, int, dict[str, str]] | None = None,
    ) -> None:
        """``context``: TLS with this ``ssl.SSLContext`` (to ``tunnel``'s host when there is one).
        ``tunnel``: (host, port, headers) to ask the proxy at ``host:port`` to connect to."""
        self.host, self.port, self.timeout = host, port, timeout
        self.context, self.tunnel = context, tunnel
        self.sock: Any = None
        self._buf = bytearray()  # bytes read from the socket, not yet handed out
        self.answer: Answer | None = None

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
            name = self.host
            if self.tunnel is not None:
                thost, tport, headers = self.tunnel
                self._connect_tunnel(thost, tport, headers)
                name = thost
            if self.context is not None:
                self.sock = self.context.wrap_socket(sock, server_hostname=name)
        except BaseException:
            sock.close()
            self.sock = None
            raise

    def _connect_tunnel(self, host: str, port: int, headers: dict[str, str]) -> None:
        authority = f"{_bracketed(host)}:{port}"
        head = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        status, reason, _, _ = self._read_head()
        if status != 200:
            raise OSError(f"Tunnel connection failed: {status} {reason}")
        if self._buf:  # the TLS handshake must be the next thing on the wire
            raise ProtocolError("the proxy sent bytes after accepting the tunnel")

    def request(
        self,
        method: str,
        target: str,
        authority: str,
        headers: dict[str, str],
        body: bytes | None = None,
    ) -> Answer:
        """Send one request and read its answer's head; the body is the answer's to read."""
        # a redirect's Location may hold spaces or non-ASCII: sent percent-encoded (UTF-8)
        lines = [f"{method} {quote(target, safe=_TARGET_SAFE)} HTTP/1.1", f"Host: {authority}"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} has a line break in its value")
            lines.append(f"{name}: {value}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(data + body if body else data)
        for _ in range(MAX_INFORMATIONAL + 1):
            status, reason, version, fields = self._read_head()
            if status == 101:
                raise ProtocolError("the server switched protocols, which was not asked for")
            if not 100 <= status < 200:
                break  # 1xx (100 Continue, 103 Early Hints): the real answer follows
        else:
            raise ProtocolError(f"more than {MAX_INFORMATIONAL} informational answers")
        self.answer = Answer(self, method, status, reason, version, fields)
        return self.answer

    def reusable(self) -> bool:
        """Whether the connection may carry the next request: its answer was read to the end,
        the server keeps it open, and no byte beyond that answer arrived."""
        answer = self.answer
        return (
            self.sock is not None
            and answer is not None
            and answer.done
            and not answer.will_close
            and not self._buf
        )

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buf.clear()
        if sock is not None:
            sock.close()

    # ------------------------------------------------------------------ reading
    def _fill(self) -> int:
        """Read what the socket has into the connection's buffer (0: the server closed)."""
        chunk = self.sock.recv(RECV)
        self._buf += chunk
        return len(chunk)

    def _read_head(self) -> tuple[int, str, str, dict[str, str]]:
        """The status line and headers (names in lower case; repeated names joined by ", ")."""
        start = 0
        while True:
            end = self._buf.find(b"\r\n\r\n", start)
            if end >= 0:
                break
            if len(self._buf) > HEAD_MAX:
                raise ProtocolError(f"the answer's headers run past {HEAD_MAX} bytes")
            start = max(0, len(self._buf) - 3)
            if not self._fill():
                if self._buf:
                    raise ProtocolError("the connection closed in the middle of an answer's head")
                raise Disconnected("the server closed the connection without answering")
        head = self._buf[:end].decode("latin-1")
        del self._buf[: end + 4]
        status_line, _, rest = head.partition("\r\n")
        version, _, tail = status_line.partition(" ")
        code, _, reason = tail.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not _DIGITS.fullmatch(code):
            raise ProtocolError(f"not an HTTP/1.1 answer: {status_line[:80]!r}")
        fields: dict[str, str] = {}
        key = ""
        for line in rest.split("\r\n") if rest else ():
            if line[:1] in (" ", "\t") and key:  # obs-fold: the previous value goes on
                fields[key] = (fields[key] + " " + line.strip(_OWS)).strip(_OWS)
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip(_OWS):
                raise ProtocolError(f"a header line that is not one: {line[:80]!r}")
            key, value = name.lower(), value.strip(_OWS)
            if key not in fields:
                fields[key] = value
            elif key in _JOINED or key == "content-length":  # (differing lengths: refused later)
                fields[key] = f"{fields[key]}, {value}"
        return int(code), reason.strip(_OWS), version, fields

    def _readline(self) -> bytes:
        """One CRLF-ended line of the body's framing (chunk sizes, trailers), without its end."""
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buf[:end]).rstrip(b"\r")
                del self._buf[: end + 1]
                return line
            if len(self._buf) > LINE_MAX:
                raise ProtocolError("a chunk-size line runs past its limit")
            start = len(self._buf)
            if not self._fill():
                raise BodyEnded("the connection closed inside the chunked body's framing")

    def _readinto(self, view: memoryview) -> int:
        """Bytes for the body: first what the buffer holds, then straight from the socket."""
        if self._buf:
            n = min(len(view), len(self._buf))
            with memoryview(self._buf) as held:
                view[:n] = held[:n]
            del self._buf[:n]
            return n
        if self.sock is None:
            raise BodyEnded("the connection was closed before the body's end")
        return int(self.sock.recv_into(view))


class Answer:
    """An answer whose head was read; ``readinto`` reads its body, framing included."""

    def __init__(
        self,
        conn: Connection,
        method: str,
        status: int,
        reason: str,
        version: str,
        fields: dict[str, str],
    ) -> None:
        self.conn, self.status, self.reason, self.headers = conn, status, reason, fields
        tokens = {t.strip().lower() for t in fields.get("connection", "").split(",")}
        keep = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        self.chunked = False
        self.length: int | None = None  # body bytes still to come, when announced
        self._chunk = 0  # bytes left in the current chunk
        coding = fields.get("transfer-encoding")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self.length = 0
        elif coding is not None:
            self.chunked = coding.rsplit(",", 1)[-1].strip(_OWS).lower() == "chunked"
            # any other coding runs to the connection's end; chunked with a Content-Length too,
            # or in an HTTP/1.0 answer, is framing to trust for this answer but no further
            keep = keep and self.chunked and "content-length" not in fields
            keep = keep and version != "HTTP/1.0"
        elif "content-length" in fields:
            values = {v.strip(_OWS) for v in fields["content-length"].split(",")}
            if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values))):
                raise ProtocolError(f"a Content-Length that is not one: {values}")
            self.length = int(values.pop())
        else:
            keep = False  # the body runs to the connection's end
        self.will_close = not keep
        self.done = self.length == 0
        self._failed: BaseException | None = None  # raised by the next read

    def readinto(self, buf: Any) -> int:
        """Fill ``buf`` with body bytes (all of it, or up to the body's end, when the body has a
        length); 0 at the body's end.

        A body of known length fills the buffer in one call, as many socket reads as that
        takes: a tile smaller than the buffer arrives in one call, so the caller never keeps
        a resume note for a file it finishes at once. On a slow link the call hands over what
        came after :data:`FILL_SECONDS`. A failure after some bytes came returns those bytes
        first and is raised by the next call."""
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed
        view = memoryview(buf).cast("B")
        if self.done or not len(view):
            return 0
        if self.chunked:
            return self._read_chunked(view)
        if self.length is None:  # to the connection's end: what the socket has now
            n = self.conn._readinto(view)
            self.done = not n
            return n
        view = view[: self.length]
        got = 0
        began = time.monotonic()
        try:
            while got < len(view):
                n = self.conn._readinto(view[got:])
                if not n:
                    raise BodyEnded(
                        f"connection closed with {self.length - got} bytes of the body missing"
                    )
                got += n
                if got < len(view) and time.monotonic() - began > FILL_SECONDS:
                    break  # a slow link: hand over what came (progress, a cancel between reads)
        except (OSError, ProtocolError) as exc:
            if not got:
                raise
            self._failed = exc
        self.length -= got
        self.done = self.length == 0
        return got

    def _read_chunked(self, view: memoryview) -> int:
        conn = self.conn
        if not self._chunk:
            size = conn._readline().split(b";", 1)[0].strip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size):
                raise ProtocolError(f"a chunk size that is not one: {size[:20]!r}")
            self._chunk = int(size, 16)
            if not self._chunk:
                while conn._readline():  # trailer fields, up to the empty line
                    pass
                self.done = True
                return 0
        n = conn._readinto(view[: self._chunk])
        if not n:
            raise BodyEnded("connection closed inside a chunk of the body")
        self._chunk -= n
        if not self._chunk and conn._readline():
            raise ProtocolError("a chunk longer than its announced size")
        return n

    def isclosed(self) -> bool:
        """True once the whole body was read."""
        return self.done


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def authority(host: str, port: int, default: int) -> str:
    """The ``Host`` header for a host and port (the port only when not the scheme's own)."""
    return _bracketed(host) if port == default else f"{_bracketed(host)}:{port}"
