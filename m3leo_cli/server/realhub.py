"""What the real Hub does that a kind mirror does not: ``m3leo serve --real-hub``.

The loopback server normally behaves kindly: content links never expire and the content host's
ETag is the sha256. The real Hub's content host (a CDN in front of LFS/Xet storage) has its own
ETag, signs its links and refuses them once they expire; the Hub answers gated and private repos
with ``X-Error-Code``, redirects renamed repos with ``307`` and sends ``RateLimit`` headers on
every answer. :class:`RealHub` holds those settings and the pure pieces (signing, validators,
quota counting, access decisions) the handlers use. Clients are tested against it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qs

QUOTAS = {  # per 5-minute window, as the Hub publishes them (anonymous, with a token)
    "api": (500, 1000),
    "resolvers": (3000, 5000),
    "pages": (100, 200),
}
WINDOW = 300
INVALID_TOKEN = "Invalid credentials in Authorization header"


@dataclass
class RealHub:
    """Settings of the real-Hub behaviours (``None`` on a server: the kind mirror)."""

    link_ttl: float = 3600.0  # seconds a signed content link stays valid (Xet bridge: 1 hour)
    expired_status: int = 403  # what the content host answers an expired link (CloudFront: 403)
    gated: frozenset[str] = frozenset()  # repo ids that need accepted terms
    private: frozenset[str] = frozenset()  # repo ids only granted tokens see
    tokens: frozenset[str] = frozenset()  # valid tokens (empty: any token is valid)
    granted: frozenset[str] = frozenset()  # tokens with access to the gated and private repos
    renames: dict[str, str] = field(default_factory=dict)  # old repo id -> new (307)
    quotas: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(QUOTAS))
    window: float = WINDOW  # seconds of the fixed quota window
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    _revoked_before: float = -1.0  # links issued at or before this are refused
    _last_issued: float = 0.0  # issue times are unique and increasing (ms): revocation is exact
    _counts: dict[tuple[str, bool], int] = field(default_factory=dict, repr=False)
    _window_start: float = field(default_factory=time.time, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ signed links
    def sign(self, path: str, now: float | None = None) -> str:
        """The query of a signed content link for ``path`` (issued now, valid ``link_ttl``)."""
        issued = time.time() if now is None else now
        with self._lock:  # a link issued right after expire_links must not count as revoked
            issued = max(round(issued, 3), round(self._last_issued + 0.001, 3))
            self._last_issued = issued
        expires = f"{issued + self.link_ttl:.3f}"
        return f"Issued={issued:.3f}&Expires={expires}&Signature={self._mac(path, issued, expires)}"

    def _mac(self, path: str, issued: float | str, expires: str) -> str:
        msg = f"{path}|{float(issued):.3f}|{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:40]

    def check_link(self, path: str, query: str) -> str | None:
        """None if the signed link is valid now, else why the content host refuses it."""
        q = parse_qs(query)
        try:
            issued, expires, sig = q["Issued"][0], q["Expires"][0], q["Signature"][0]
            ok = hmac.compare_digest(sig, self._mac(path, issued, expires))
            if not ok:
                return "SignatureDoesNotMatch"
            if time.time() > float(expires) or float(issued) <= self._revoked_before:
                return "Request has expired"
        except (KeyError, IndexError, ValueError):
            return "Missing Key-Pair-Id query parameter or cookie value"
        return None

    def expire_links(self) -> None:
        """Every link issued so far is refused from now on (as if its hour had passed)."""
        with self._lock:
            self._revoked_before = self._last_issued

    # ------------------------------------------------------------------ validators
    @staticmethod
    def content_etag(sha256: str) -> str:
        """The CDN's own ETag: stable per content, deliberately unlike the sha256."""
        return hashlib.md5(("cdn:" + sha256).encode(), usedforsecurity=False).hexdigest()

    @staticmethod
    def last_modified(mtime_ns: int) -> str:
        return formatdate(mtime_ns / 1e9, usegmt=True)

    # ------------------------------------------------------------------ quotas
    def count(self, bucket: str, token: str | None) -> dict[str, str]:
        """Count one request in ``bucket``; the ``RateLimit`` headers the Hub would send."""
        quota = self.quotas.get(bucket, QUOTAS["api"])[1 if token else 0]
        with self._lock:
            now = time.time()
            if now - self._window_start >= self.window:
                self._window_start, self._counts = now, {}
            key = (bucket, bool(token))
            self._counts[key] = used = self._counts.get(key, 0) + 1
            reset = max(1, int(self.window - (now - self._window_start)))
        return {
            "RateLimit": f'"{bucket}";r={max(0, quota - used)};t={reset}',
            "RateLimit-Policy": f'"fixed window";"{bucket}";q={quota};w={self.window:g}',
        }

    # ------------------------------------------------------------------ access
    def access(self, repo_id: str, token: str | None) -> tuple[int, str | None, str] | None:
        """None to serve, else the (status, X-Error-Code, message) the Hub answers."""
        if token is not None and self.tokens and token not in self.tokens:
            return 401, None, INVALID_TOKEN
        ok = token is not None and (token in self.granted or not (self.tokens or self.granted))
        if repo_id in self.private and not ok:
            if token is None:
                return 401, "RepoNotFound", "Repository not found"
            return 404, "RepoNotFound", "Repository not found"
        if repo_id in self.gated and not ok:
            msg = (
                f"Access to dataset {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in."
            )
            if token is None:
                return 401, "GatedRepo", msg
            return (
                403,
                "GatedRepo",
                f"Access to dataset {repo_id} is restricted and you are not in the "
                "authorized list.",
            )
        return None
