"""The HTTP engine under :class:`~m3leo_cli.hub.client.HubClient`: urllib3's keep-alive pools,
proxies (``CONNECT`` tunnels for ``https://``), TLS and answer parsing, with the few rules a
dataset manager adds on top.

Why urllib3: it is the maintained HTTP/1.1 stack under requests and huggingface_hub's own
downloads, fixed through advisories and fuzzing; it checks an idle pooled connection before
reusing it (bytes a server sent unasked never pass for the next answer), refuses conflicting
``Content-Length`` values and tunnels through proxies. An earlier hand-written client measured
1.16x ``http.client`` on plain HTTP and 1.00-1.08x over TLS; the Hub is HTTPS only, so that
gain never reached users (docs/design.md, "The Hub engine"; benchmarks/bench_engines.py).

What this module adds, and only that:

* **Strict answers.** A header name or value holding CR, LF or NUL (after unfolding obs-fold),
  a ``Content-Length`` that is not 1-19 ASCII digits, or one beside ``Transfer-Encoding``, is a
  :class:`RemoteProtocolError`, never a value passed on (RFC 9110 5.5, RFC 9112 6.3).
* **Deadlines for whole answers**, not only per read: the head must arrive within
  ``settings.answer_budget`` seconds, and a body must keep an average of ``settings.min_rate``
  bytes/s after that budget. Each socket read gets the smaller of the per-read timeout and the
  time left, so a server trickling a byte a second, or endless trailers, ends in a
  :class:`ReadTimeout` (no watchdog thread: download processes fork only from a single-thread
  parent).
* **Bounded reads**: ``read(limit)`` raises :class:`AnswerTooLarge` past ``limit`` and
  ``discard`` reads at most 64 KiB before closing instead.
* Typed errors (:class:`TransportError` subclasses carrying the URL of the hop) for whatever
  urllib3, ``socket`` or ``ssl`` raised, malformed URLs (bad port, bad IPv6, non-ASCII host)
  included.

Redirects, retries, pacing and auth are the client's.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.client import IncompleteRead
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from .deadline import connection_classes
from .netenv import proxy_for, redact_proxy, split_userinfo, ssl_context
from .transport import (  # re-exported: the engine's errors live beside it
    BAD_CHARS,
    AnswerTooLarge,
    ConnectError,
    ConnectTimeout,
    Headers,
    ProxyError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TimeoutException,
    TransportError,
    UnsupportedProtocol,
    stale,
    state,
    strict_headers,
    translate,
)

__all__ = [
    "AnswerTooLarge",
    "ConnectError",
    "ConnectTimeout",
    "Headers",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "TimeoutException",
    "TransportError",
    "UnsupportedProtocol",
    "Wire",
    "strict_headers",
]

_LINK = re.compile(r"<([^>]*)>\s*;([^,]*)")
_REL = re.compile(r'rel\s*=\s*"?([^";]+)"?')
STEP = 65536  # bytes asked of the connection in one call (a socket read, or four TLS records)
FILL_SECONDS = 0.25  # a read that has bytes returns after this, full or not (progress, Ctrl-C)
_DISCARD_MAX = 65536  # a redirect or error body up to this size is read so the connection stays


class Response:
    """An answer whose body is read by the caller (``readinto``, ``read``, ``iter_bytes``).

    ``close`` hands the connection back to the pool when the body was read to its end, and
    closes it otherwise (a body cut short must never be read as the next answer).
    """

    def __init__(self, raw: Any, url: str, headers: Headers, budget: float, rate: float) -> None:
        self._raw = raw
        self.url = url
        self.status_code: int = raw.status
        self.headers = headers
        self._conn = raw.connection
        self._start = time.monotonic()
        self._budget, self._rate = budget, rate
        self._got = 0
        self._closed = False
        self._failed: BaseException | None = None
        # a body of known length is read with http.client's own readinto, straight into the
        # caller's buffer (urllib3's read copies each piece); chunked ones through urllib3
        length = headers.get("content-length")
        known = length is not None and not raw.chunked and raw.length_remaining is not None
        self._left: int | None = raw.length_remaining if known else None
        self._direct = getattr(raw, "_fp", None) if known and self._left else None

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
        """Fill ``buf`` (a writable buffer) with body bytes; 0 at the end of the body.

        A body of known length fills the buffer in one call however the network cut it; on
        a slow link the call hands over what came within a quarter second (progress, cancel).
        """
        if self._failed is not None:
            exc, self._failed = self._failed, None
            self._abort()
            raise translate(exc, self.url, None, connected=True) from None
        conn = self._conn
        if conn is not None:  # the body must keep its minimum average rate after the budget
            conn.deadline = self._start + self._budget + self._got / self._rate
        state.deadline = False
        view = buf if isinstance(buf, memoryview) else memoryview(buf)
        want = len(view)
        if self._left is not None:
            want = min(want, self._left)
        got = 0
        until = 0.0
        direct = self._direct
        try:
            while got < want:
                if direct is not None:  # a known length: straight into the buffer, no copy
                    n = direct.readinto(view[got : min(want, got + STEP)])
                    if not n:
                        if self._left:  # the connection ended before the body did
                            raise IncompleteRead(b"", self._left - got)
                        break
                else:
                    chunk = self._raw.read1(min(want - got, STEP), decode_content=False)
                    if not chunk:
                        break
                    n = len(chunk)
                    view[got : got + n] = chunk
                got += n
                now = time.monotonic()
                if not until:
                    until = now + FILL_SECONDS
                elif now >= until:
                    break
        except BaseException as exc:
            if got:  # what came before a failure is handed over first; the next call fails
                self._failed = exc
                self._account(got)
                return got
            self._abort()
            raise translate(exc, self.url, None, connected=True) from None
        self._account(got)
        return got

    def _account(self, got: int) -> None:
        self._got += got
        if self._left is not None:
            self._left -= got

    def at_end(self) -> bool:
        """True once the whole body was read (the connection can carry the next request)."""
        raw = self._raw
        return bool(raw.isclosed() or (raw.length_remaining == 0 and not raw.chunked))

    def iter_bytes(self, size: int = 1 << 20) -> Iterator[bytes]:
        buf = bytearray(size)
        view = memoryview(buf)
        while True:
            n = self.readinto(view)
            if not n:
                return
            yield bytes(view[:n])

    def read(self, limit: int | None = None) -> bytes:
        """The whole body; past ``limit`` bytes, :class:`AnswerTooLarge` (and the connection is
        closed, not reused)."""
        out = bytearray()
        step = 1 << 20 if limit is None else max(1, min(1 << 20, limit + 1))
        for chunk in self.iter_bytes(step):
            out += chunk
            if limit is not None and len(out) > limit:
                self._abort()
                raise AnswerTooLarge(f"answer larger than {limit:,} bytes", self.url)
        return bytes(out)

    def discard(self) -> None:
        """Read a small unwanted body (redirect, error) so the connection is reused; a body
        that is longer, or has no end in sight after 64 KiB, closes the connection instead."""
        try:
            length = self.headers.get("content-length")
            if length is None or int(length) <= _DISCARD_MAX:
                seen = 0
                for chunk in self.iter_bytes(_DISCARD_MAX):
                    seen += len(chunk)
                    if seen > _DISCARD_MAX:
                        break
        except TransportError:
            pass
        self.close()

    def _abort(self) -> None:
        """The connection is done (a failed or abandoned read): close it, free its pool slot."""
        if self._closed:
            return
        self._closed = True
        try:
            self._raw.close()
        finally:
            self._raw.release_conn()

    def close(self) -> None:
        if self._closed:
            return
        if self.at_end():  # read to its end: the connection goes back to the pool
            self._closed = True
            if not self._raw.isclosed():
                self._raw.read1(1, decode_content=False)  # no body (HEAD, 204): ends it
            self._raw.release_conn()
        else:
            self._abort()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Wire:
    """Send requests over urllib3's pooled connections (thread-safe)."""

    def __init__(self, settings: Settings, pool: int = 16) -> None:
        self.settings = settings
        self.timeout = settings.timeout
        self.pool = pool
        self.budget = float(getattr(settings, "answer_budget", 120.0))
        self.rate = float(getattr(settings, "min_rate", 8192.0))
        self._lock = threading.Lock()
        self._managers: dict[str | None, Any] = {}  # proxy URL (None: direct) -> PoolManager
        self._pools: dict[tuple[str, str, int], Any] = {}  # direct routes' pools
        self._routes: dict[tuple[str, str, int], str | None] = {}  # (scheme, host, port) -> proxy
        self._ssl: Any = None

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None = None
    ) -> Response:
        """Send one request; the answer's headers are read, its body is not."""
        from urllib3.exceptions import LocationValueError
        from urllib3.util import parse_url

        try:
            parts = parse_url(url)
            scheme = (parts.scheme or "").lower()
            host = parts.host
            port = parts.port
        except (LocationValueError, ValueError) as exc:
            raise UnsupportedProtocol(f"malformed URL ({exc})", url) from None
        if scheme not in ("http", "https") or not host:
            raise UnsupportedProtocol(f"cannot fetch {scheme or 'a'}:// URLs", url)
        if not host.isascii():
            raise UnsupportedProtocol(f"host {host!r} is not an ASCII (IDNA) name", url)
        for name, value in headers.items():
            if BAD_CHARS.search(value) or BAD_CHARS.search(name):
                raise ConfigError(
                    f"the request header {name!r} holds a line break or NUL",
                    "check the token (HF_TOKEN, --token, the stored token) and the settings "
                    "for stray line breaks",
                )
        port = port or (443 if scheme == "https" else 80)
        proxy = self._route(scheme, host, port)
        if proxy is None:  # straight to the host: its pool, found once, with the path alone
            opener, target = self._pool(scheme, host, port), parts.request_uri
        else:  # the proxy manager adds absolute form or the tunnel
            opener, target = self._manager(proxy, scheme), url
        for attempt in (0, 1):
            state.deadline = False
            state.head_deadline = time.monotonic() + self.budget
            try:
                raw = opener.urlopen(
                    method,
                    target,
                    body=body,
                    headers=headers,
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    decode_content=False,
                    assert_same_host=False,
                )
            except Exception as exc:
                err = translate(exc, url, proxy, connected=None)
                if attempt == 0 and stale(exc):
                    continue  # the server closed a keep-alive connection as we sent: once more
                raise err from None
            try:
                head = getattr(raw, "_original_response", None)
                defects = getattr(getattr(head, "msg", None), "defects", None)
                if defects:  # a line that is no header, bytes after the head's end, ...
                    raise RemoteProtocolError(f"malformed answer head ({defects[0]!r})", url)
                fields = strict_headers(raw.headers.iteritems(), url)
            except RemoteProtocolError:
                raw.close()
                raw.release_conn()
                raise
            return Response(raw, url, fields, self.budget, self.rate)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            managers, self._managers = self._managers, {}
            self._pools = {}
        for manager in managers.values():
            manager.clear()

    # ------------------------------------------------------------------ pools
    def _pool(self, scheme: str, host: str, port: int) -> Any:
        """The connection pool for a host reached directly (PoolManager keys it per request
        otherwise: a measurable cost at a thousand files a second)."""
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            manager = self._manager(None, scheme)
            with self._lock:
                pool = self._pools[key] = manager.connection_from_host(host, port, scheme)
        return pool

    def _manager(self, proxy: str | None, scheme: str) -> Any:
        with self._lock:
            manager = self._managers.get(proxy)
            if manager is None:
                manager = self._managers[proxy] = self._new_manager(proxy)
            if scheme == "https" and "ssl_context" not in manager.connection_pool_kw:
                manager.connection_pool_kw["ssl_context"] = self._context()
        return manager

    def _new_manager(self, proxy: str | None) -> Any:
        from urllib3 import PoolManager, ProxyManager, Timeout

        http_pool, https_pool = connection_classes()
        kw: dict[str, Any] = {
            "num_pools": 64,
            "maxsize": self.pool,
            "block": False,
            "timeout": Timeout(connect=self.timeout, read=self.timeout),
            "retries": False,
        }
        if proxy is None:
            manager = PoolManager(**kw)
        else:
            from urllib3.util import make_headers

            where, creds = split_userinfo(proxy)
            headers = make_headers(proxy_basic_auth=creds) if creds else None
            try:
                manager = ProxyManager(where, proxy_headers=headers, **kw)
            except Exception as exc:  # a proxy URL urllib3 cannot use
                raise ConfigError(
                    f"cannot use the proxy {redact_proxy(proxy) or proxy} ({exc})",
                    "set HTTPS_PROXY/HTTP_PROXY to http://host:port",
                ) from None
        manager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}
        return manager

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
        if self._ssl is None:
            self._ssl = ssl_context(self.settings)
        return self._ssl
