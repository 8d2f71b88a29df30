"""The network environment, honoured like huggingface_hub honours it: proxies and CA bundles.

``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` and the CA bundle variables are read once into
:class:`~m3leo_cli.config.Settings` (config reads the environment; this module never does).
:func:`proxy_for` decides per request, from the URL, whether it goes straight to its host or
through the proxy for its scheme, so the Hub and its content host can take different routes
(one proxied, one in ``NO_PROXY``); :mod:`~m3leo_cli.hub.wire` sends it that way.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..config import Settings
from ..errors import ConfigError


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
    """The TLS context: one that trusts ``settings.ca_bundle``, else certifi's bundle when it
    is installed (what requests, httpx and huggingface_hub trust), else the system's."""
    import ssl

    path = settings.ca_bundle
    if path is None:
        try:
            import certifi
        except ImportError:
            return ssl.create_default_context()
        return ssl.create_default_context(cafile=certifi.where())
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use the CA bundle {path} ({exc})",
            "point REQUESTS_CA_BUNDLE (or SSL_CERT_FILE, M3LEO_CA_BUNDLE) at a PEM file",
        ) from None


def proxy_route(proxy: str) -> tuple[str, int]:
    """The host and port of an ``http://`` proxy URL (other kinds are refused, with the fix)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(proxy)
        host, port = parts.hostname, parts.port or 80
    except ValueError as exc:
        raise ConfigError(
            f"bad proxy URL {redact_proxy(proxy)!r} ({exc})",
            "set HTTPS_PROXY/HTTP_PROXY to e.g. http://proxy.example:3128",
        ) from None
    if parts.scheme != "http" or not host:
        raise ConfigError(
            f"the proxy {redact_proxy(proxy)} is not an http:// proxy; m3leo talks to HTTP "
            "proxies (https:// sites go through a CONNECT tunnel)",
            "set HTTPS_PROXY/HTTP_PROXY/ALL_PROXY to the proxy's http:// address, e.g. "
            "http://proxy.example:3128",
        )
    return host, port


def redact_proxy(url: str | None) -> str | None:
    """A proxy URL without its password, for ``config show`` and error messages."""
    if not url or "@" not in url:
        return url
    scheme, sep, rest = url.rpartition("://")
    creds, _, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hostpart}"


def split_userinfo(proxy: str) -> tuple[str, str | None]:
    """The proxy URL without its ``user:password@`` and that pair, percent-decoded."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(proxy)
    if parts.username is None:
        return proxy, None
    netloc = parts.netloc.rpartition("@")[2]
    creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return parts._replace(netloc=netloc).geturl(), creds
