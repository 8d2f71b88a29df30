"""What the Hub engine trusts of an answer, and how it fails: :class:`TransportError` and its
kinds (each carrying the URL of the hop), the one translation from what urllib3, ``socket``,
``ssl`` or ``http.client`` raised into them (:func:`translate`), and the strict reading of an
answer's headers (:func:`strict_headers`). The client (:mod:`.client`) maps the errors to the
user's."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ConfigError

state = threading.local()  # per thread: whether the last read failed on its deadline
_LENGTH = re.compile(r"[0-9]{1,19}")
_FOLD = re.compile(r"\r?\n[ \t]+")
BAD_CHARS = re.compile(r"[\r\n\x00]")
_JOINED = frozenset({"link"})  # repeated, these are one list; other names keep their first value


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
    """A URL scheme other than http/https, or a URL that cannot be parsed (port, host)."""


class TimeoutException(TransportError):
    """No answer within the timeout (or the whole answer not within its deadline)."""


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class RemoteProtocolError(TransportError):
    """The server closed the connection or answered outside HTTP/1.1."""


class ReadError(TransportError):
    """The connection broke while the body was being read."""


class AnswerTooLarge(TransportError):
    """A body read into memory grew past its cap (never retried: the server is not a Hub)."""


def stale(exc: BaseException) -> bool:
    """A keep-alive connection the server had closed: nothing of an answer arrived."""
    from http.client import RemoteDisconnected

    from urllib3.exceptions import ProtocolError

    if not isinstance(exc, ProtocolError):
        return False
    cause = exc.args[1] if len(exc.args) > 1 else exc.__context__
    return isinstance(cause, RemoteDisconnected | ConnectionResetError | BrokenPipeError)


def translate(
    exc: BaseException, url: str, proxy: str | None, connected: bool | None
) -> BaseException:
    """The engine's error for what urllib3, ``socket`` or ``ssl`` raised.

    ``connected``: None while sending (urllib3 tells connect from read failures itself).
    """
    if not isinstance(exc, Exception) or isinstance(exc, ConfigError | TransportError):
        return exc  # KeyboardInterrupt and the like pass through unchanged
    from http.client import HTTPException, IncompleteRead

    from urllib3 import exceptions as u3

    late = "the answer took longer than its deadline" if state.__dict__.get("deadline") else ""
    state.deadline = False
    if isinstance(exc, u3.NameResolutionError):
        return (ProxyError if proxy else ConnectError)(_reason(exc), url)
    if isinstance(exc, u3.ProxyError):
        return ProxyError(_reason(exc), url)
    if isinstance(exc, u3.NewConnectionError):
        return (ProxyError if proxy else ConnectError)(_reason(exc), url)
    if isinstance(exc, u3.ConnectTimeoutError):
        return ConnectTimeout("timed out", url)
    if isinstance(exc, u3.SSLError):
        return ConnectError(_reason(exc), url)
    if isinstance(exc, u3.ReadTimeoutError | TimeoutError):
        return ReadTimeout(late or "timed out", url)
    if isinstance(exc, u3.LocationValueError):
        return UnsupportedProtocol(f"malformed URL ({exc})", url)
    if isinstance(exc, u3.ProtocolError | u3.InvalidHeader | u3.DecodeError):
        cause = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(cause, IncompleteRead) and cause.expected:
            return RemoteProtocolError(
                f"the connection ended with {cause.expected} bytes of the body missing", url
            )
        if isinstance(cause, TimeoutError):
            return ReadTimeout(late or "timed out", url)
        if connected and isinstance(cause, ConnectionResetError | BrokenPipeError):
            return ReadError(_reason(exc), url)
        return RemoteProtocolError(_reason(exc), url)
    if isinstance(exc, IncompleteRead):  # http.client's own, from a body read directly
        return RemoteProtocolError(
            f"the connection ended with {exc.expected} bytes of the body missing", url
        )
    if isinstance(exc, HTTPException):
        return RemoteProtocolError(f"malformed answer ({type(exc).__name__}: {exc})", url)
    if isinstance(exc, u3.HTTPError):
        return RemoteProtocolError(_reason(exc), url)
    if isinstance(exc, OSError):
        return (ReadError if connected else ConnectError)(str(exc) or type(exc).__name__, url)
    if isinstance(exc, ValueError | UnicodeError):  # malformed bytes urllib3 let through
        return RemoteProtocolError(f"malformed answer ({exc})", url)
    return exc


def _reason(exc: BaseException) -> str:
    """The innermost useful text of a urllib3 error (not its object reprs)."""
    inner: BaseException | None = exc
    while inner is not None and getattr(inner, "reason", None) is not None:
        inner = inner.reason  # type: ignore[attr-defined]
    text = str(inner or exc)
    text = re.sub(r"<urllib3\.[^>]*>: ", "", text)
    if "ssl" in type(inner or exc).__name__.lower() or "CERTIFICATE" in text:
        return text
    return text or type(exc).__name__


class Headers(Mapping[str, str]):
    """Case-insensitive view of an answer's headers (names listed in lower case; a repeated
    header keeps its first value, but ``Link`` values are joined by ", ")."""

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


def strict_headers(pairs: Any, url: str) -> Headers:
    """The answer's headers, or a :class:`RemoteProtocolError` for bytes no honest server
    sends: CR, LF or NUL in a name or value, a malformed or conflicting Content-Length, or a
    Content-Length beside Transfer-Encoding (one answer's bytes could pass for another's)."""
    fields: dict[str, str] = {}
    lengths: set[str] = set()
    for raw_name, raw_value in pairs:
        name = raw_name.lower()
        value = _FOLD.sub(" ", raw_value).strip(" \t") if "\n" in raw_value else raw_value
        if BAD_CHARS.search(name) or BAD_CHARS.search(value):
            raise RemoteProtocolError(f"header {name!r} carries CR, LF or NUL: {value!r}", url)
        if name == "content-length":
            for part in value.split(","):
                if not _LENGTH.fullmatch(part.strip(" \t")):
                    raise RemoteProtocolError(f"malformed Content-Length {value[:40]!r}", url)
                lengths.add(part.strip(" \t").lstrip("0") or "0")
        if name in fields:
            if name in _JOINED:
                fields[name] += ", " + value
            continue
        fields[name] = value
    if len(lengths) > 1:
        raise RemoteProtocolError(f"conflicting Content-Length values {sorted(lengths)}", url)
    if lengths and "transfer-encoding" in fields:
        raise RemoteProtocolError("Content-Length beside Transfer-Encoding", url)
    return Headers(fields)
