"""The Git LFS batch API, as the Hub serves it to ``git lfs``: many content links per request.

A file's ``/resolve/`` answers with one ``302`` to its signed content link: one Hub round trip
and one resolver-quota request per file. The batch endpoint
``{endpoint}/datasets/{repo}.git/info/lfs/objects/batch`` answers the same question for up to
:data:`BATCH` LFS objects (by sha256 and size) at once, each with its own signed ``href`` that
expires. A download of thousands of tiles then costs a Hub request per hundred files, not per
file.

This module holds the pure pieces: the request document and the reading of the answer. The
I/O (token, pacing, the fall-back to ``/resolve/``) is :meth:`HubClient.prefetch_links`'s.
What the Hub counts these requests against is not published: m3leo paces them on the
resolvers budget (``docs/download.md``). Objects the answer does not give a usable link for
are resolved one by one, and every byte is verified against the manifest's sha256 whatever the
link, so a wrong answer costs a request, never wrong data.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

MEDIA_TYPE = "application/vnd.git-lfs+json"
BATCH = 100  # objects per request: git-lfs's own default batch size
EXPIRY_MARGIN = 30.0  # seconds: a link this close to its expiry is not handed out
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RESOLVE = re.compile(r"^/datasets/([^/]+)/([^/]+)/resolve/")


@dataclass(frozen=True)
class Link:
    """A content-host URL for a file, with the headers it must be fetched with."""

    href: str
    headers: Mapping[str, str] = field(default_factory=dict)
    expires: float | None = None  # time.monotonic() after which it is not used


@dataclass(frozen=True)
class Want:
    """One file asked for: its ``/resolve/`` URL, content sha256 (hex) and size."""

    url: str
    sha256: str
    size: int


def repo_of(resolve_url: str) -> str | None:
    """``org/name`` of a dataset ``/resolve/`` URL (None for anything else)."""
    m = _RESOLVE.match(urlsplit(resolve_url).path)
    return f"{unquote(m.group(1))}/{unquote(m.group(2))}" if m else None


def batch_url(endpoint: str, repo_id: str) -> str:
    return f"{endpoint.rstrip('/')}/datasets/{repo_id}.git/info/lfs/objects/batch"


def batch_request(wants: Sequence[Want]) -> bytes:
    """The request document: a download of these objects over the basic transfer."""
    doc = {
        "operation": "download",
        "transfers": ["basic"],
        "objects": [{"oid": w.sha256, "size": w.size} for w in wants],
        "hash_algo": "sha256",
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def read_answer(
    body: bytes, wants: Sequence[Want], base: str, now: float | None = None
) -> dict[str, Link] | None:
    """Map each wanted ``/resolve/`` URL to its link, from the batch answer ``body``.

    None when ``body`` is not a batch answer at all (the endpoint does not speak the protocol):
    the caller stops asking. Objects with an error, no download action, another size or an
    expired link are left out; the worker resolves those itself and meets the Hub's own error.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    objects = doc.get("objects") if isinstance(doc, dict) else None
    if not isinstance(objects, list):
        return None
    now = time.monotonic() if now is None else now
    by_oid: dict[tuple[str, int], list[str]] = {}
    for w in wants:
        by_oid.setdefault((w.sha256, w.size), []).append(w.url)
    links: dict[str, Link] = {}
    for obj in objects:
        link = _link(obj, base, now)
        if link is None:
            continue
        for url in by_oid.get((obj["oid"], obj["size"]), ()):
            links[url] = link
    return links


def _link(obj: Any, base: str, now: float) -> Link | None:
    if not isinstance(obj, dict) or "error" in obj:
        return None
    oid, size = obj.get("oid"), obj.get("size")
    if not (isinstance(oid, str) and _SHA256.match(oid) and isinstance(size, int)):
        return None
    actions = obj.get("actions")
    action = actions.get("download") if isinstance(actions, dict) else None
    if not isinstance(action, dict) or not isinstance(action.get("href"), str):
        return None
    href = urljoin(base, action["href"])
    if urlsplit(href).scheme not in ("http", "https"):
        return None
    raw_headers = action.get("header") or {}
    if not isinstance(raw_headers, dict):
        return None
    headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
    left = _seconds_left(action)
    if left is not None and left <= EXPIRY_MARGIN:
        return None
    return Link(href, headers, None if left is None else now + left - EXPIRY_MARGIN)


def _seconds_left(action: dict[str, Any]) -> float | None:
    """``expires_in`` (seconds) wins over ``expires_at`` (RFC 3339), as the spec says."""
    expires_in = action.get("expires_in")
    if isinstance(expires_in, int | float) and expires_in != 0:
        return float(expires_in) if math.isfinite(expires_in) else 0.0  # NaN, inf: not usable
    expires_at = action.get("expires_at")
    if isinstance(expires_at, str) and expires_at and not expires_at.startswith("0001-"):
        try:
            at = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            return 0.0  # an expiry we cannot read: not a link to trust
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # RFC 3339 always has an offset; UTC if it is missing
        return at.timestamp() - time.time()
    return None
