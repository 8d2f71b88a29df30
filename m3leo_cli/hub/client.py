"""Hub protocol client: revision, paginated tree, resolve URLs, retries, pacing, auth.

One :class:`HubClient` is shared by every worker thread of a run. It owns one pooled HTTP/1.1
engine (:mod:`~m3leo_cli.hub.wire`: keep-alive to the Hub and to the content host), one
:class:`~m3leo_cli.hub.pacing.Pacer` per budget that keeps the run under the Hub's per-window
request quota, and the retry policy. Redirects are followed by hand so the token is only ever
sent to the endpoint's own origin, never to the content host a ``302`` points at.

The content-host URL a ``resolve`` was redirected to is remembered (a small LRU): a retry or a
resume goes straight there, sparing the resolver quota. Those links are signed and expire; a
``403``/``410`` from the content host re-resolves once and carries on. API calls and resolver
calls are paced on their own budgets (the Hub's buckets), and a ``RateLimit`` answer whose
remaining count is zero pauses its bucket. A refused connection or a DNS failure is reported at
once (one quick retry); a timeout is not retried, so ``--timeout`` means what it says.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from ..config import Settings
from ..errors import (
    HubConnectionError,
    HubError,
    HubProtocolError,
    M3leoError,
    OfflineError,
    RateLimitedError,
    ServerError,
)
from ..version import __version__
from .answers import TreeEntry, parse_json, redirect_target, slice_body, tree_entry
from .failures import connection_error, redact, status_error
from .lfsbatch import MEDIA_TYPE, Link, Want, batch_request, batch_url, read_answer, repo_of
from .pacing import Pacer, Retrier, ratelimit_reset
from .wire import (
    AnswerTooLarge,
    ConnectError,
    Response,
    TimeoutException,
    TransportError,
    UnsupportedProtocol,
    Wire,
)

USER_AGENT = f"m3leo/{__version__}"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_BATCH_ANSWER = 16 << 20  # bytes: a batch answer for 100 objects is ~50 KB
MAX_API_ANSWER = 16 << 20  # bytes: a revision or other API answer is a few hundred bytes
MAX_TREE_PAGE = 64 << 20  # bytes: a tree page of 1,000 entries is ~300 KB
MAX_SMALL_FILE = 512 << 20  # bytes: a split CSV or GeoJSON of unknown size (largest seen: 65 MB)
LINK_CACHE = 4096  # content-host links remembered (resolve URL -> signed CDN URL)
QUICK_RETRY_S = 0.2  # the one retry a refused connection or a DNS failure gets
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_BATCH_PATH = ".git/info/lfs/objects/batch"  # links by the hundred (lfsbatch): a download's
_RERESOLVE = (403, 410)  # a content host's answer to an expired or revoked signed link


def resolve_url(endpoint: str, repo_id: str, commit: str, path: str) -> str:
    """The download URL of ``path`` at ``commit`` (path quoted, slashes kept)."""
    rev = quote(commit, safe="")
    return f"{endpoint.rstrip('/')}/datasets/{repo_id}/resolve/{rev}/{quote(path)}"


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``; asked several times per file, so cached by prefix."""
    scheme, sep, rest = url.partition("://")
    return _origin_of(scheme + sep + rest.partition("/")[0].partition("?")[0])


@lru_cache(maxsize=64)
def _origin_of(prefix: str) -> tuple[str, str, int | None]:
    parts = urlsplit(prefix)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), port)


class HubClient:
    """Thread-safe client for one Hub endpoint (``settings.endpoint``, i.e. HF_ENDPOINT)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint.rstrip("/")
        self._origin = _origin(self.endpoint)
        # the environment was read once, into settings (see hub.netenv); redirects by hand
        self._http = Wire(settings, pool=max(16, settings.workers * 2))
        self.pacers = {
            bucket: Pacer(budget, settings.window_seconds)
            for bucket, budget in settings.budgets.items()
        }
        self.pacer = self.pacers["resolvers"]
        self._lock = threading.Lock()
        self._links: OrderedDict[str, Link] = OrderedDict()
        self._batch = settings.lfs_batch  # False once the Hub does not answer LFS batches
        self.requests = 0  # every request sent, retries and redirect hops included
        self.reresolved = 0  # content links refused (expired) and resolved again

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ public API
    def revision(self, repo_id: str, revision: str = "main") -> str:
        """Resolve a branch, tag or commit to the 40-hex commit id."""
        url = f"{self.endpoint}/api/datasets/{repo_id}/revision/{quote(revision, safe='')}"
        data = self._get_json(url)
        sha = data.get("sha") if isinstance(data, dict) else None
        if not isinstance(sha, str) or not _HEX40.match(sha):
            raise HubProtocolError(f"revision answer from {url} has no 40-hex 'sha'", url=url)
        return sha

    def iter_tree(
        self, repo_id: str, commit: str, path: str = "", recursive: bool = True
    ) -> Iterator[TreeEntry]:
        """Every file and folder under ``path`` at ``commit``, following ``Link: rel=next``."""
        url = f"{self.endpoint}/api/datasets/{repo_id}/tree/{quote(commit, safe='')}"
        if path:
            url += "/" + quote(path.strip("/"))
        url += f"?recursive={'true' if recursive else 'false'}&expand=false"
        seen: set[str] = set()
        while url:
            if url in seen:
                raise HubProtocolError(f"tree pagination loops at {url}", url=url)
            seen.add(url)
            with self.stream("GET", url) as resp:
                body = self._read_body(resp, url, MAX_TREE_PAGE)
                nxt = resp.links.get("next", {}).get("url")
            page = parse_json(body, url)
            if not isinstance(page, list):
                raise HubProtocolError(f"tree listing from {url} is not a JSON array", url=url)
            for item in page:
                yield tree_entry(item, url)
            url = urljoin(url, nxt) if nxt else ""

    def resolve_url(self, repo_id: str, commit: str, path: str) -> str:
        return resolve_url(self.endpoint, repo_id, commit, path)

    def get_bytes(self, repo_id: str, commit: str, path: str, size: int | None = None) -> bytes:
        """A whole small file (CSV, GeoJSON, README), redirects followed; more bytes than
        ``size`` (the listing's), or than :data:`MAX_SMALL_FILE`, is a HubProtocolError."""
        url = self.resolve_url(repo_id, commit, path)
        return self._retry_body(url, {}, cap=MAX_SMALL_FILE if size is None else size)

    def get_range(self, url: str, start: int, end: int) -> bytes:
        """Bytes ``start..end`` (inclusive). A server that ignores Range still yields the slice."""
        if end < start:
            return b""
        return self._retry_body(url, {"range": f"bytes={start}-{end}"}, start=start, end=end)

    # ------------------------------------------------------------------ transport
    @contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Iterator[Response]:
        """Send one request (paced, redirects by hand, retried until a non-error status).

        Yields the open response with its body unread; the caller reads it. Error statuses are
        mapped to typed ``HubError`` subclasses; 2xx and 206 are returned.
        """
        if self.settings.offline:
            raise OfflineError(f"offline mode is on; not requesting {redact(url)}")
        retrier = Retrier(self.settings.max_retries, self.pacers[self._bucket(url)])
        fresh = False  # True once a refused content link was resolved again
        while True:
            try:
                resp = self._send_following(method, url, headers or {}, fresh, body)
            except TransportError as exc:
                with self._lock:  # a content link that cannot be reached: resolve afresh
                    self._links.pop(url, None)
                if self.retry_transport(exc, retrier):
                    continue
                raise self.connection_error(exc, url) from None
            content = self.is_content_host(str(resp.url))
            if content and not fresh and self._is_resolve(url) and self._refused(resp):
                resp.discard()  # an expired signed link: ask the Hub for a fresh one, once
                with self._lock:
                    self._links.pop(url, None)
                    self.reresolved += 1
                fresh = True
                continue
            if resp.status_code in RETRY_STATUS and retrier.again(resp.status_code, resp.headers):
                resp.discard()
                continue
            try:
                err = status_error(resp, self.settings, content_host=content)
                if err is not None:
                    raise err
                yield resp
            finally:
                resp.close()
            return

    def prefetch_link(self, url: str) -> bool:
        """Ask the Hub where a file's content lives (its ``302``) without fetching it.

        The link is remembered, so the GET that follows goes straight to the content host:
        the Hub's round trip leaves the file's critical path (see fetch.runner's resolve-ahead).
        The request is paced and authorised like any resolve. Best effort: on any failure the
        GET resolves as usual, with its retries and its error. Returns whether a link is known.
        """
        if self.settings.offline or not self._is_resolve(url):
            return False
        with self._lock:
            if url in self._links:
                return True
        try:
            resp = self._send_one("GET", url, {})
        except TransportError:
            return False
        location = resp.headers.get("location")
        resp.discard()
        if resp.status_code in REDIRECTS and location:
            nxt = urljoin(url, location)
            if _origin(nxt) != self._origin:
                self._remember(url, Link(nxt))
                return True
        return False

    def prefetch_links(self, wants: list[Want]) -> int | None:
        """Like :meth:`prefetch_link` for many LFS files, one request per repo (the Git LFS
        batch API, :mod:`~m3leo_cli.hub.lfsbatch`). How many links are now known; None once the
        Hub does not answer batches (or ``lfs_batch`` is off): then resolve file by file."""
        if self.settings.offline or not self._batch:
            return None
        groups: dict[str, list[Want]] = {}
        for w in wants:
            repo = repo_of(w.url) if _origin(w.url) == self._origin else None
            if repo is not None:
                groups.setdefault(repo, []).append(w)
        known = 0
        for repo, group in groups.items():
            url = batch_url(self.endpoint, repo)
            body = self._post_batch(url, batch_request(group))
            if body is None:
                return known  # busy past the retries, or unreachable: resolve one by one
            links = read_answer(body, group, url) if body else None
            usable = {r: k for r, k in (links or {}).items() if _origin(k.href) != self._origin}
            if links is None or (links and not usable):
                self._batch = False  # not a batch answer, or links only to the Hub itself
                return None
            for resolve, link in usable.items():
                self._remember(resolve, link)
            known += len(usable)
        return known

    def _post_batch(self, url: str, doc: bytes) -> bytes | None:
        """The body of a 200 answer (b"" for any other final answer); None when the Hub stays
        busy (429/5xx, retried by :meth:`stream` like any request) or cannot be reached."""
        media = {"accept": MEDIA_TYPE, "content-type": MEDIA_TYPE}
        try:
            with self.stream("POST", url, headers=media, body=doc) as resp:
                return resp.read(MAX_BATCH_ANSWER) if resp.status_code == 200 else b""
        except (HubConnectionError, RateLimitedError, ServerError):
            return None
        except M3leoError:
            return b""

    def retry_transport(self, exc: BaseException, retrier: Retrier) -> bool:
        """Whether to try again after a transport error (sleeping first).

        A refused connection or a DNS failure gets one quick retry, a timeout none (the user's
        timeout is the answer); a dropped connection gets the retrier's full budget.
        """
        if isinstance(exc, TimeoutException | AnswerTooLarge):
            return False  # the user's timeout is the answer; an oversized answer stays one
        if isinstance(exc, ConnectError | UnsupportedProtocol):
            if retrier.attempts >= 1 or retrier.max_retries == 0:
                return False
            retrier.attempts += 1
            time.sleep(QUICK_RETRY_S)
            return True
        return retrier.again(None, None)

    def connection_error(self, exc: BaseException, url: str) -> HubError:
        """The error for a failed connection, naming the host that failed (Hub or content)."""
        failed = getattr(exc, "url", "") or url  # the engine knows the hop that failed
        return connection_error(
            exc, failed, self.settings, content_host=self.is_content_host(failed)
        )

    def is_content_host(self, url: str) -> bool:
        return _origin(url) != self._origin

    def _is_resolve(self, url: str) -> bool:
        return "/resolve/" in url and _origin(url) == self._origin

    def _bucket(self, url: str) -> str:
        """The Hub's rate-limit bucket of a request to the endpoint (resolvers, api, pages)."""
        path = urlsplit(url).path
        if "/resolve/" in path or self.is_content_host(url) or path.endswith(_BATCH_PATH):
            return "resolvers"  # content links and the bytes: part of a download
        return "api" if path.startswith("/api/") else "pages"

    def _refused(self, resp: Response) -> bool:
        return resp.status_code in _RERESOLVE

    def _send_following(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        fresh: bool = False,
        body: bytes | None = None,
    ) -> Response:
        start, extra = url, {}
        if method == "GET" and not fresh and self._is_resolve(url):
            with self._lock:
                link = self._links.get(url)  # a known content link: skip the resolver
            if link is not None and (link.expires is None or link.expires > time.monotonic()):
                url, extra = link.href, dict(link.headers)
        for _ in range(MAX_REDIRECTS + 1):
            # a batch link's own headers go with its first hop only, never where it redirects
            resp = self._send_one(method, url, {**headers, **extra} if extra else headers, body)
            extra = {}
            if resp.status_code in REDIRECTS and "location" in resp.headers:
                resp.discard()
                nxt = redirect_target(url, resp.headers["location"])
                if resp.status_code == 303:
                    method, body = "GET", None
                url = nxt
                continue
            if url != start and method == "GET" and self._is_resolve(start) and resp.is_success:
                if _origin(url) != self._origin:
                    self._remember(start, Link(url))
            return resp
        raise HubProtocolError(f"more than {MAX_REDIRECTS} redirects from {redact(url)}", url=url)

    def _send_one(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None = None
    ) -> Response:
        """One request, no redirect followed: the token and pacing only for the endpoint's own
        origin, every request counted."""
        hdrs = {"user-agent": USER_AGENT, "accept-encoding": "identity", **headers}
        own = _origin(url) == self._origin
        if self.settings.token and own:
            hdrs["authorization"] = f"Bearer {self.settings.token}"
        if own:
            self.pacers[self._bucket(url)].acquire()
        with self._lock:
            self.requests += 1
        resp = self._http.send(method, url, hdrs, body)
        if own:
            self._observe(url, resp)
        return resp

    def _remember(self, resolve: str, content: Link) -> None:
        with self._lock:
            self._links[resolve] = content
            self._links.move_to_end(resolve)
            while len(self._links) > LINK_CACHE:
                self._links.popitem(last=False)

    def _observe(self, url: str, resp: Response) -> None:
        """A ``RateLimit`` answer with nothing left pauses its bucket until the window resets."""
        wait = ratelimit_reset(resp.headers)
        if wait is not None and resp.status_code != 429:  # a 429 is handled by the retrier
            self.pacers[self._bucket(url)].hold(min(wait, Retrier.MAX_SERVER_WAIT))

    def _read_body(self, resp: Response, url: str, cap: int) -> bytes:
        """The body, read into memory up to ``cap`` bytes (an endless answer is refused)."""
        return resp.read(cap)

    def _retry_body(
        self,
        url: str,
        headers: dict[str, str],
        start: int = 0,
        end: int | None = None,
        cap: int = MAX_API_ANSWER,
    ) -> bytes:
        """GET a body, retrying dropped connections (small bodies: no resume needed)."""

        retrier = Retrier(self.settings.max_retries, self.pacers[self._bucket(url)])
        while True:
            try:
                with self.stream("GET", url, headers=headers) as resp:
                    if end is None:
                        return self._read_body(resp, url, cap)
                    return slice_body(resp, start, end)
            except TransportError as exc:
                if not self.retry_transport(exc, retrier):
                    raise self.connection_error(exc, url) from None

    def _get_json(self, url: str) -> Any:
        return parse_json(self._retry_body(url, {}), url)
