"""The HTTP engine under :class:`~m3leo_cli.hub.client.HubClient`: HTTP/1.1 connections
(:mod:`.http11`) in a keep-alive pool per route.

Why not httpx here: measured against nginx on this project's 2-core machine, a resolve (302)
plus a content GET per file, written and sha256-hashed, runs at ~270 files/s on an
``httpx.Client`` with 16 threads (it parses every answer in pure Python, h11, and copies each
body chunk), ~830 files/s on the standard library's ``http.client`` and ~970 files/s on
:mod:`.http11` (benchmarks/bench_engines.py, docs/benchmarks.md). httpx stays the project's
client for other services (Earth Engine REST).

What the engine does, and only that: one pooled connection per request at a time (threads
share the pool), routes straight to the host or through the scheme's proxy (``netenv``;
``http://`` targets in absolute form, ``https://`` targets through a ``CONNECT`` tunnel), TLS
with the trust store from ``netenv.ssl_context``, and one silent retry when a pooled keep-alive
connection turns out to be closed by the server. Redirects, retries, pacing and auth are the
client's. Failures are :class:`TransportError` subclasses carrying the URL of the hop.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

from ..config import Settings
from ..errors import ConfigError
from .http11 import Answer, Connection, Disconnected, ProtocolError, authority
from .netenv import proxy_for, proxy_route, ssl_context

_LINK = re.compile(r"<([^>]*)>\s*;([^,]*)")
_REL = re.compile(r'rel\s*=\s*"?([^";]+)"?')
_DISCARD_MAX = 65536  # a redirect or error body up to this size is read so the connection stays


class TransportError(Exception):
    """The request did not get a complete answer (the hop's URL is in ``url``)."""

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class ConnectError(TransportError):
    """Refused, unreachable, DNS failure, TLS handshake failure."""


class ProxyError(ConnectError):
    """The proxy refused the connection or the tunnel."""


class UnsupportedProtocol(ConnectError):
    """A URL scheme other than http/https."""


class TimeoutException(TransportError):
    """No answer within the timeout."""


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class RemoteProtocolError(TransportError):
    """The server closed the connection or answered outside HTTP/1.1."""


class ReadError(TransportError):
    """The connection broke while the body was being read."""


class Headers(Mapping[str, str]):
    """Case-insensitive view of an answer's headers (names listed in lower case; a repeated
    header's values joined by ", ")."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def get(self, name: str, default: Any = None) -> Any:
        return self._fields.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class Response:
    """An answer whose body is read by the caller (``readinto``, ``read``, ``iter_bytes``).

    ``close`` hands the connection back to the pool when the body was read to its end, and
    closes it otherwise (a body cut short must never be read as the next answer).
    """

    def __init__(self, wire: Wire, key: tuple, conn: Connection, raw: Answer, url: str) -> None:
        self._wire, self._key, self._raw = wire, key, raw
        self._conn: Connection | None = conn
        self.url = url
        self.status_code: int = raw.status
        self.headers = Headers(raw.headers)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The ``Link`` header by ``rel`` (``{"next": {"url": ..., "rel": "next"}}``)."""
        out: dict[str, dict[str, str]] = {}
        for target, params in _LINK.findall(self.headers.get("link") or ""):
            m = _REL.search(params)
            if m:
                for rel in m.group(1).split():
                    out[rel] = {"url": target.strip(), "rel": rel}
        return out

    def readinto(self, buf: Any) -> int:
        """Fill ``buf`` (a writable buffer) with body bytes; 0 at the end of the body."""
        try:
            return self._raw.readinto(buf)
        except BaseException as exc:
            conn, self._conn = self._conn, None  # a failed read: the connection is done
            if conn is not None:
                conn.close()
            if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
                raise ReadTimeout("timed out", self.url) from None
            if isinstance(exc, ProtocolError):
                raise RemoteProtocolError(str(exc), self.url) from None
            if isinstance(exc, OSError):
                raise ReadError(f"{exc or type(exc).__name__}", self.url) from None
            raise

    def at_end(self) -> bool:
        """True once the whole body was read (the connection can carry the next request)."""
        return self._raw.isclosed()

    def iter_bytes(self, size: int = 1 << 20) -> Iterator[bytes]:
        buf = bytearray(size)
        view = memoryview(buf)
        while True:
            n = self.readinto(view)
            if not n:
                return
            yield bytes(view[:n])

    def read(self, limit: int | None = None) -> bytes:
        """The body (or its first ``limit`` bytes and a bit: the rest is not read, and the
        connection is closed rather than reused)."""
        out = bytearray()
        for chunk in self.iter_bytes():
            out += chunk
            if limit is not None and len(out) > limit:
                break
        return bytes(out)

    def discard(self) -> None:
        """Read a small unwanted body (redirect, error) so the connection is reused; close."""
        try:
            length = self.headers.get("content-length")
            if length is None or (length.isdigit() and int(length) <= _DISCARD_MAX):
                for _ in self.iter_bytes(_DISCARD_MAX):
                    pass
        except TransportError:
            pass
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.reusable():  # a body cut short must never be read as the next answer
            self._wire._put(self._key, conn)
        else:
            conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Wire:
    """Send requests over pooled HTTP/1.1 connections (thread-safe)."""

    def __init__(self, settings: Settings, pool: int = 16) -> None:
        self.settings = settings
        self.timeout = settings.timeout
        self.pool = pool
        self._idle: dict[tuple, list[Any]] = {}
        self._lock = threading.Lock()
        self._ssl: Any = None
        self._routes: dict[tuple[str, str, int], str | None] = {}  # (scheme, host, port) -> proxy
        self.connections = 0  # connections opened (reuse shows as requests >> connections)

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None = None
    ) -> Response:
        """Send one request; the answer's headers are read, its body is not."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise UnsupportedProtocol(f"cannot fetch {scheme or 'a'}:// URLs", url)
        default = 443 if scheme == "https" else 80
        port = parts.port or default
        proxy = self._route(scheme, parts.hostname, port)
        key = (scheme, parts.hostname, port, proxy)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host = authority(parts.hostname, port, default)
        hdrs = dict(headers)
        if proxy is not None and scheme == "http":
            target = f"http://{host}{target}"  # absolute form
            auth = _proxy_auth(proxy)
            if auth:
                hdrs["proxy-authorization"] = auth
        for attempt in (0, 1):
            conn, reused = self._get(key, fresh=attempt > 0)
            if not reused:
                try:
                    conn.connect()  # its own step: a failure here is a failure to connect
                except BaseException as exc:
                    conn.close()
                    raise _translate(exc, url, proxy, connected=False) from None
            try:
                raw = conn.request(method, target, host, hdrs, body)
            except (BrokenPipeError, ConnectionResetError, Disconnected) as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: a fresh one
                raise RemoteProtocolError(str(exc) or type(exc).__name__, url) from None
            except BaseException as exc:
                conn.close()
                raise _translate(exc, url, proxy, connected=True) from None
            return Response(self, key, conn, raw, url)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # ------------------------------------------------------------------ pool
    def _get(self, key: tuple, fresh: bool = False) -> tuple[Connection, bool]:
        with self._lock:
            conns = self._idle.get(key)
            if conns and not fresh:
                return conns.pop(), True
            self.connections += 1
        return self._connection(key), False

    def _put(self, key: tuple, conn: Connection) -> None:
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if len(conns) < self.pool:
                conns.append(conn)
                return
        conn.close()

    def _connection(self, key: tuple) -> Connection:
        scheme, host, port, proxy = key
        context = self._context() if scheme == "https" else None
        if proxy is None:
            return Connection(host, port, self.timeout, context)
        phost, pport = proxy_route(proxy)
        if scheme == "http":
            return Connection(phost, pport, self.timeout)
        auth = _proxy_auth(proxy)
        tunnel = (host, port, {"Proxy-Authorization": auth} if auth else {})
        return Connection(phost, pport, self.timeout, context, tunnel=tunnel)

    def _route(self, scheme: str, host: str, port: int) -> str | None:
        """The proxy for a host, or None; decided once per host (NO_PROXY is parsed once)."""
        key = (scheme, host, port)
        try:
            return self._routes[key]
        except KeyError:
            proxy = self._routes[key] = proxy_for(self.settings, scheme, host, port)
            return proxy

    def _context(self) -> Any:
        """The TLS context, made once (loading a trust store costs ~20 ms)."""
        with self._lock:
            if self._ssl is None:
                self._ssl = ssl_context(self.settings)
            return self._ssl


@lru_cache(maxsize=16)
def _proxy_auth(proxy: str) -> str | None:
    parts = urlsplit(proxy)
    if parts.username is None:
        return None
    creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return "Basic " + base64.b64encode(creds).decode("ascii")


def _translate(exc: BaseException, url: str, proxy: str | None, connected: bool) -> BaseException:
    """The engine's error for what :mod:`.http11`, ``socket`` or ``ssl`` raised."""
    if not isinstance(exc, Exception) or isinstance(exc, ConfigError):
        return exc  # KeyboardInterrupt and the like pass through unchanged
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return (ReadTimeout if connected else ConnectTimeout)("timed out", url)
    if "Tunnel connection failed" in text:
        return ProxyError(text, url)
    if isinstance(exc, ProtocolError):
        return RemoteProtocolError(text, url)
    if isinstance(exc, OSError):
        if not connected:
            return (ProxyError if proxy else ConnectError)(text, url)
        return ReadError(text, url)
    return exc
