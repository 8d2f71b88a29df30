"""Reading the Hub's answers: tree entries, JSON bodies, the slice of a ranged body.

Pure functions of a response or a parsed document, kept apart from the client's I/O; a
malformed answer becomes a :class:`~m3leo_cli.errors.HubProtocolError` naming the URL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..errors import HubProtocolError
from .failures import redact
from .wire import Response


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a tree listing. ``lfs_sha256`` is the content sha256 (hex) of LFS files."""

    path: str
    type: str
    size: int
    oid: str
    lfs_sha256: str | None


def slice_body(resp: Response, start: int, end: int) -> bytes:
    if resp.status_code == 206:
        cr = resp.headers.get("content-range", "")
        m = re.match(r"bytes (\d+)-(\d+)/", cr)
        if not m or int(m.group(1)) != start:
            raise HubProtocolError(f"wrong Content-Range {cr!r} for bytes={start}-{end}")
        return resp.read(end - start + 1)  # more than asked for: AnswerTooLarge
    # 200: the server ignored Range; skip to the slice and stop reading after it
    out = bytearray()
    pos = 0
    for chunk in resp.iter_bytes(1 << 20):
        lo, hi = max(start - pos, 0), min(end + 1 - pos, len(chunk))
        if lo < hi:
            out += chunk[lo:hi]
        pos += len(chunk)
        if pos > end:
            break
    return bytes(out)


def parse_json(body: bytes, url: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HubProtocolError(
            f"invalid JSON from {redact(url)} ({body[:60]!r}...)", url=url
        ) from None


def tree_entry(item: Any, url: str) -> TreeEntry:
    try:
        lfs = item.get("lfs") or None
        sha = lfs.get("oid") if isinstance(lfs, dict) else None
        return TreeEntry(
            path=str(item["path"]),
            type=str(item["type"]),
            size=int(item.get("size") or 0),
            oid=str(item.get("oid", "")),
            lfs_sha256=str(sha) if sha else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise HubProtocolError(
            f"malformed tree entry from {redact(url)}: {item!r:.120}", url=url
        ) from None


def redirect_target(came_from: str, location: str) -> str:
    """The redirect target, if the engine can use it: http(s), an ASCII host, a port in range;
    else a HubProtocolError naming the host that sent it (B6)."""
    try:
        nxt = urljoin(came_from, location)
        parts = urlsplit(nxt)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        ok = ok and (parts.hostname or "").isascii()
        _ = parts.port  # raises ValueError when out of range or not a number
    except ValueError:
        ok = False
    if ok:
        return nxt
    host = urlsplit(came_from).netloc
    raise HubProtocolError(
        f"{host} redirected {redact(came_from)} to a malformed URL {location[:120]!r}",
        "a proxy or mirror on the way may be broken: check HF_ENDPOINT and HTTPS_PROXY",
        url=came_from,
    )
