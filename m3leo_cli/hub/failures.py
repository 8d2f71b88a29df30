"""Turn a failed answer or a failed connection into the typed error a user can act on.

Two hosts take part in every download: the Hub (the endpoint: API and ``resolve``) and the
content host its ``302`` points at (a CDN in front of the LFS/Xet storage). Errors name the one
that failed, because the fix differs: a firewall that lets only huggingface.co through breaks
the second; an expired token breaks the first. The hints follow the Hub's ``X-Error-Code``
(``RepoNotFound``, ``GatedRepo``, ``RevisionNotFound``, ``EntryNotFound``) and whether a token
was sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import (
    AuthError,
    ContentHostDeniedError,
    ContentHostUnreachableError,
    HubConnectionError,
    HubError,
    HubProtocolError,
    RateLimitedError,
    RemoteNotFoundError,
    ServerError,
)

if TYPE_CHECKING:
    from .wire import Response

_NOT_FOUND_CODES = {"RepoNotFound", "RevisionNotFound", "EntryNotFound"}
LOGIN = "log in with `hf auth login`, set HF_TOKEN or pass --token"
GATED_HINT = (
    "this dataset is gated: accept its terms on its Hub page while logged in, then " + LOGIN
)
ANON_REPO_HINT = (
    "the repo may be private or gated and you are anonymous: "
    + LOGIN
    + "; else check the region, edition and --revision"
)
BAD_TOKEN_HINT = (
    "the token is expired or invalid: create a new one and run `hf auth login`, or pass "
    "--token; unset HF_TOKEN (and remove the stored token) to go anonymous"
)


PROXY_AUTH_HINT = (
    "put the proxy's user and password in its URL: "
    "HTTPS_PROXY=http://user:password@proxy.example:3128 (percent-encode special characters)"
)


def redact(url: str) -> str:
    """The URL without its query (signed content URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def status_error(resp: Response, settings: Settings, *, content_host: bool) -> HubError | None:
    """The error for an answer of status >= 400 (None for a success)."""
    status = resp.status_code
    if status < 400:
        return None
    url = str(resp.url)
    where = redact(url)
    code = resp.headers.get("x-error-code", "")
    msg = resp.headers.get("x-error-message", "")
    detail = f"{status} {code}".strip() + (f": {msg}" if msg else "")
    if status == 407:
        return AuthError(
            f"the proxy asked for credentials (407) at {where}",
            PROXY_AUTH_HINT,
            url=url,
            status=status,
        )
    if content_host and status in (401, 403, 410):
        return ContentHostDeniedError(
            f"the content host {host_of(url)} refused {where} ({status}) even with a fresh "
            "link from the Hub",
            url=url,
            status=status,
        )
    if status == 429:
        return RateLimitedError(
            f"rate-limited at {where} after every retry", url=url, status=status
        )
    if status >= 500:
        return ServerError(
            f"server error at {where} ({detail}) after every retry", url=url, status=status
        )
    token_from = settings.source_of("token")
    if code == "GatedRepo":
        return AuthError(
            f"access to a gated repo denied: {where} ({detail})", GATED_HINT, url=url, status=status
        )
    if status == 401 and settings.token and code not in _NOT_FOUND_CODES:
        return AuthError(
            f"the Hub rejected the token (from {token_from}) at {where} ({detail})",
            BAD_TOKEN_HINT,
            url=url,
            status=status,
        )
    if code in _NOT_FOUND_CODES or (status == 404 and not code):
        hint = None
        if msg.startswith("this mirror has no "):  # m3leo serve: a mirror, not the Hub
            return RemoteNotFoundError(
                f"{msg} ({where})",
                f"the mirror at HF_ENDPOINT ({settings.endpoint}) does not hold it: ask for a "
                "--region (or the other --edition) it serves; `m3leo serve` prints them at start",
                url=url,
                status=status,
            )
        if not settings.token and code in ("RepoNotFound", ""):
            hint = ANON_REPO_HINT
        elif code == "RepoNotFound":
            hint = (
                "check the region, edition and --revision; if the repo is private or gated, "
                f"the token (from {token_from}) may not have access to it"
            )
        where_text = "on the content host" if content_host else "on the Hub"
        return RemoteNotFoundError(
            f"not found {where_text}: {where} ({detail})", hint, url=url, status=status
        )
    if status in (401, 403):
        who = f"with the token from {token_from}" if settings.token else "anonymously"
        return AuthError(
            f"access denied to {where} ({who}; {detail})",
            None if settings.token else "this needs a token: " + LOGIN,
            url=url,
            status=status,
        )
    return HubError(f"unexpected answer from {where} ({detail})", url=url, status=status)


def connection_error(
    exc: BaseException, url: str, settings: Settings, *, content_host: bool
) -> HubError:
    """A failure to reach ``url`` (refused, DNS, timeout, proxy), naming the host and route.

    A host that *answered*, with bytes that are no valid HTTP answer or with more than any
    answer of its kind may hold, was reached: that is a :class:`HubProtocolError` saying what
    it sent (one file's failure, not a network outage that stops the run)."""
    from .netenv import proxy_for, redact_proxy
    from .wire import AnswerTooLarge, RemoteProtocolError

    parts = urlsplit(url)
    via = proxy_for(settings, parts.scheme, parts.hostname or "", parts.port)
    route = f" through the proxy {redact_proxy(via)}" if via else ""
    what = f"{type(exc).__name__}: {exc or 'no detail'}"
    if isinstance(exc, RemoteProtocolError | AnswerTooLarge) and "connection ended" not in str(exc):
        who = "the content host" if content_host else "the Hub"
        return HubProtocolError(
            f"{who} {parts.netloc}{route} answered {redact(url)} with {exc}",
            "a proxy or mirror on the way may be broken: retry later, or check HF_ENDPOINT "
            "and HTTPS_PROXY",
            url=url,
        )
    if content_host:
        return ContentHostUnreachableError(
            f"cannot reach the content host {parts.netloc}{route} ({what}); the Hub at "
            f"{settings.endpoint} answered and redirected there",
            url=url,
        )
    hint = None
    if via:
        hint = "check the proxy (HTTPS_PROXY, HTTP_PROXY) or list the host in NO_PROXY"
    if via and " 407" in str(exc):  # a CONNECT the proxy refused for want of credentials
        hint = PROXY_AUTH_HINT
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        hint = (
            "the server's certificate is not trusted here: point REQUESTS_CA_BUNDLE (or "
            "SSL_CERT_FILE) at your site's CA bundle"
        )
    return HubConnectionError(
        f"cannot reach the Hub at {redact(url)}{route} ({what}); HF_ENDPOINT is "
        f"{settings.endpoint}",
        hint,
        url=url,
    )
