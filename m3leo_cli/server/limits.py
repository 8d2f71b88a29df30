"""How much of a request ``m3leo serve`` is willing to read, and the checks that hold it there.

The stdlib's ``http.server`` parses request lines and headers; what it does not do is bound
them together or bound a body at all (a 600 MB POST was read whole into memory). These limits
are checked before anything is read past them:

- the request line: 8 KiB, as nginx allows (``414`` above it). The longest a client sends is a
  resolve URL of a repo path or a tree page with its cursor: a few hundred bytes;
- the header block: 64 KiB in all and 99 fields (``431`` above either; the stdlib's parser
  stops at 100 lines, the blank line that ends them included). Hub clients send a few hundred
  bytes, a token included;
- a request body: :data:`MAX_BODY` (``413`` above it, before a byte of it is read). Only the
  ``paths-info`` and Git LFS batch POSTs have one; everything else's body is never read.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from email.message import Message

MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 99  # http.client.parse_headers counts the closing blank line in its 100
# The largest legitimate body is a paths-info POST or an LFS batch of 100 objects: tens of KB
# (100 x {"oid": 64 hex, "size": n}); 2 MiB is room for a paths-info of ~10,000 paths, and at
# the connection cap (256) the worst case of bodies held at once stays at 512 MiB.
MAX_BODY = 2 * 1024 * 1024


# Methods a client may know but this read-only server never takes: 405 with Allow (RFC 9110
# 15.5.6). Any other method is unknown: 501.
NOT_ALLOWED = ("OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT")
# After a 413 the server reads (and drops) what the client is still sending for this long at
# most, so the client gets to read the answer instead of a reset; then it closes.
LINGER_S = 2.0


def header_text(text: str, limit: int = 300) -> str:
    """``text`` fit for a header value: printable ASCII only (a message may quote what the
    client sent: a CR or LF there would start a header of the client's choosing)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:limit]


def linger(conn: socket.socket, seconds: float = LINGER_S) -> None:
    """After an answer that ends the connection early: stop writing, drop what the client still
    sends for ``seconds`` at most (a 64 KiB buffer, never kept), then let the caller close."""
    deadline = time.monotonic() + seconds
    try:
        conn.shutdown(socket.SHUT_WR)
        buf = bytearray(65536)
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            if not conn.recv_into(buf):
                break
    except OSError:
        pass


class Refused(Exception):
    """A request the server will not read further: answer ``status`` with ``message``, close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_head(readline: Callable[[int], bytes]) -> bytes | None:
    """The header lines after the request line, up to and including the blank line.

    ``readline(limit)`` is the connection's buffered ``readline``. None if the client closed
    before the blank line; :class:`Refused` (431) past :data:`MAX_HEADER_BYTES` or
    :data:`MAX_HEADERS`.
    """
    lines: list[bytes] = []
    total = 0
    while True:
        line = readline(MAX_HEADER_BYTES - total + 1)
        if not line:
            return None
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise Refused(431, f"request headers larger than {MAX_HEADER_BYTES // 1024} KiB")
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)
        if len(lines) > MAX_HEADERS:
            raise Refused(431, f"more than {MAX_HEADERS} request headers")


def body_length(headers: Message) -> int:
    """The announced body length, checked: 0 when there is none.

    :class:`Refused` with 411 for a body without a length (``Transfer-Encoding``), 400 for a
    length that is not one plain number (``1e12``, ``-5``, two different values), 413 above
    :data:`MAX_BODY`.
    """
    if headers.get("Transfer-Encoding") is not None:
        raise Refused(411, "a request body needs a Content-Length (no Transfer-Encoding)")
    values = {v.strip() for v in headers.get_all("Content-Length") or ()}
    if not values:
        return 0
    if len(values) > 1:
        raise Refused(400, "conflicting Content-Length headers")
    value = values.pop()
    if not (value.isascii() and value.isdigit()):
        raise Refused(400, "Content-Length is not a number of bytes")
    digits = value.lstrip("0") or "0"
    length = int(digits) if len(digits) <= len(str(MAX_BODY)) else MAX_BODY + 1
    if length > MAX_BODY:
        raise Refused(413, f"request body larger than the limit of {MAX_BODY} bytes")
    return length
