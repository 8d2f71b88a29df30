"""The network environment, honoured like huggingface_hub honours it: proxies and CA bundles.

``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` and the CA bundle variables are read once into
:class:`~m3leo_cli.config.Settings` (config reads the environment; this module never does).
:func:`build_transport` turns them into one httpx transport that sends each request either
straight to its host or through the proxy for its scheme, decided per request from the URL, so
the Hub and its content host can take different routes (one proxied, one in ``NO_PROXY``).
"""

from __future__ import annotations

import ipaddress
import threading
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import ConfigError

if TYPE_CHECKING:
    import httpx


def proxy_for(settings: Settings, scheme: str, host: str, port: int | None) -> str | None:
    """The proxy URL a request to ``scheme://host:port`` goes through, or None (direct)."""
    if bypasses_proxy(settings.no_proxy, host, port):
        return None
    chosen = settings.https_proxy if scheme == "https" else settings.http_proxy
    chosen = chosen or settings.all_proxy
    if not chosen:
        return None
    return chosen if "://" in chosen else "http://" + chosen  # "proxy:3128" means http


def bypasses_proxy(no_proxy: str | None, host: str, port: int | None) -> bool:
    """True when ``host`` is listed in ``NO_PROXY`` (``*``, a domain and its subdomains, an IP,
    a CIDR block, optionally with ``:port``), as curl and requests read it."""
    if not no_proxy:
        return False
    host = host.strip("[]").lower()
    try:
        addr: Any = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, want_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if want_port and port is not None and want_port != str(port):
            continue
        name = name.strip("[]")
        if addr is not None:
            try:
                if addr in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".").lstrip("*.").lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _has_port(entry: str) -> bool:
    """``host:port`` or ``[v6]:port``, but not a bare IPv6 address."""
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1 and entry.rsplit(":", 1)[1].isdigit()


def ssl_context(settings: Settings) -> Any:
    """True (httpx's default trust store) or a context that trusts ``settings.ca_bundle``."""
    if settings.ca_bundle is None:
        return True
    import ssl

    path = settings.ca_bundle
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use the CA bundle {path} ({exc})",
            "point REQUESTS_CA_BUNDLE (or SSL_CERT_FILE, M3LEO_CA_BUNDLE) at a PEM file",
        ) from None


def build_transport(settings: Settings, limits: httpx.Limits) -> httpx.BaseTransport:
    """One transport for the client: direct, or per request through the scheme's proxy."""
    import httpx

    verify = ssl_context(settings)
    direct = httpx.HTTPTransport(verify=verify, limits=limits)
    if not (settings.http_proxy or settings.https_proxy or settings.all_proxy):
        return direct

    class _Router(httpx.BaseTransport):
        """Direct or proxied, decided per request (one pooled transport per proxy URL)."""

        def __init__(self) -> None:
            self._proxied: dict[str, httpx.HTTPTransport] = {}
            self._lock = threading.Lock()

        def _for(self, url: httpx.URL) -> httpx.BaseTransport:
            proxy = proxy_for(settings, url.scheme, url.host, url.port)
            if proxy is None:
                return direct
            with self._lock:
                return self._proxied.get(proxy) or self._make(proxy)

        def _make(self, proxy: str) -> httpx.HTTPTransport:
            if proxy not in self._proxied:
                try:
                    self._proxied[proxy] = httpx.HTTPTransport(
                        proxy=httpx.Proxy(proxy), verify=verify, limits=limits
                    )
                except ImportError:
                    raise ConfigError(
                        f"the proxy {redact_proxy(proxy)} needs SOCKS support",
                        "pip install 'httpx[socks]', or use an http:// proxy",
                    ) from None
                except (ValueError, httpx.InvalidURL) as exc:
                    raise ConfigError(
                        f"bad proxy URL {proxy!r} ({exc})",
                        "set HTTPS_PROXY/HTTP_PROXY to e.g. http://proxy.example:3128",
                    ) from None
            return self._proxied[proxy]

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return self._for(request.url).handle_request(request)

        def close(self) -> None:
            direct.close()
            for t in self._proxied.values():
                t.close()

    return _Router()


def redact_proxy(url: str | None) -> str | None:
    """A proxy URL without its password, for ``config show`` and error messages."""
    if not url or "@" not in url:
        return url
    scheme, sep, rest = url.rpartition("://")
    creds, _, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hostpart}"
