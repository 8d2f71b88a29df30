"""Proxies and CA bundles honoured like huggingface_hub: through a real proxy process (tinyproxy).

The test starts tinyproxy on a loopback port with its own log, points ``HTTP_PROXY`` at it and
checks in *the proxy's* log that the API, resolve and content requests went through it.
Loopback addresses are not exempt by default (NO_PROXY is empty here on purpose).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dl_helpers import expected_files, local_files, serve, source

from m3leo_cli.config import load_settings
from m3leo_cli.errors import HubConnectionError, M3leoError
from m3leo_cli.fetch.runner import DownloadSummary
from m3leo_cli.hub.netenv import bypasses_proxy, proxy_for
from m3leo_cli.mirror.download import download
from m3leo_cli.selection import build_selection

SEL = build_selection(edition="miniset", regions=["europe"], modalities=["gssic"])
TINYPROXY = shutil.which("tinyproxy") or (
    "/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None
)


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return source(tmp_path_factory)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _tinyproxy(folder: Path, extra: str = "") -> Iterator[tuple[str, Path]]:
    """A tinyproxy process on loopback (``extra``: more config lines); its URL and log file."""
    if TINYPROXY is None:
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy; .ci/run installs it)")
    port = _free_port()
    folder.mkdir()
    folder.chmod(0o777)  # tinyproxy may drop to another user when started as root
    log = folder / "tinyproxy.log"
    conf = folder / "tinyproxy.conf"
    conf.write_text(
        f'Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile "{log}"\nLogLevel Info\n'
        "MaxClients 64\nAllow 127.0.0.1\n" + extra
    )
    proc = subprocess.Popen(
        [TINYPROXY, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("tinyproxy did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A tinyproxy process on loopback; yields its URL and its log file."""
    with _tinyproxy(tmp_path / "tinyproxy") as running:
        yield running


def _proxied_requests(log: Path) -> list[str]:
    """The request lines tinyproxy logged (``GET http://host:port/path HTTP/1.1``)."""
    return [
        line.split("): ", 1)[1]
        for line in log.read_text(errors="replace").splitlines()
        if "Request (file descriptor" in line
    ]


def test_download_goes_through_the_proxy(info, tmp_path, proxy):
    proxy_url, log = proxy
    with serve(info) as srv:
        env = {"HTTP_PROXY": proxy_url, "NO_PROXY": ""}
        st = load_settings({"endpoint": srv.url, "data_dir": tmp_path / "d"}, env=env)
        res = download(st, SEL)
        seen = list(srv.log)
    assert isinstance(res, DownloadSummary) and res.failed == 0
    assert local_files(tmp_path / "d") == expected_files(info, "gssic")
    lines = _proxied_requests(log)
    hub, content = srv.url, srv.content_url
    assert any(line.startswith(f"GET {hub}/api/datasets/") for line in lines)  # API
    assert any(line.startswith(f"GET {hub}/datasets/") and "/resolve/" in line for line in lines)
    assert any(line.startswith(f"GET {content}/lfs/") for line in lines)  # the content host
    # and every request the server saw came from the proxy (it adds its Via header)
    assert seen and all("tinyproxy" in r.headers.get("via", "") for r in seen)


def test_no_proxy_sends_the_hub_direct(info, tmp_path, proxy):
    proxy_url, log = proxy
    with serve(info) as srv:
        env = {"HTTP_PROXY": proxy_url, "NO_PROXY": "localhost,127.0.0.1"}
        st = load_settings({"endpoint": srv.url, "data_dir": tmp_path / "d"}, env=env)
        res = download(st, SEL)
        seen = list(srv.log)
    assert isinstance(res, DownloadSummary) and res.failed == 0
    assert _proxied_requests(log) == []
    assert seen and not any("via" in r.headers for r in seen)


def test_a_dead_proxy_is_named_and_reported_fast(info, tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    with serve(info) as srv:
        st = load_settings(
            {"endpoint": srv.url, "data_dir": tmp_path / "d"}, env={"HTTP_PROXY": dead}
        )
        t0 = time.monotonic()
        with pytest.raises(HubConnectionError) as exc:
            download(st, SEL)
        took = time.monotonic() - t0
        assert srv.log == []
    assert f"through the proxy {dead}" in exc.value.message
    assert "NO_PROXY" in exc.value.hint
    assert took < 2.0


def test_proxy_choice_follows_scheme_all_proxy_and_no_proxy() -> None:
    st = load_settings(
        env={
            "https_proxy": "proxy.corp:3128",
            "HTTPS_PROXY": "http://ignored:1",  # lower case wins, as in curl and requests
            "ALL_PROXY": "socks5://all:1080",
            "NO_PROXY": ".internal.example, 10.0.0.0/8, mirror:8080",
        }
    )
    assert proxy_for(st, "https", "huggingface.co", 443) == "http://proxy.corp:3128"
    assert proxy_for(st, "http", "huggingface.co", 80) == "socks5://all:1080"
    assert proxy_for(st, "https", "cdn.internal.example", 443) is None
    assert proxy_for(st, "https", "internal.example", 443) is None
    assert proxy_for(st, "http", "10.1.2.3", 80) is None
    assert proxy_for(st, "http", "mirror", 8080) is None
    assert proxy_for(st, "http", "mirror", 9090) == "socks5://all:1080"
    assert bypasses_proxy("*", "anything", None)
    assert not bypasses_proxy("example.com", "notexample.com", None)


def test_ca_bundle_variables_are_read_in_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pem", tmp_path / "b.pem"
    st = load_settings(env={"SSL_CERT_FILE": str(b), "REQUESTS_CA_BUNDLE": str(a)})
    assert st.ca_bundle == a and st.source_of("ca_bundle") == "$REQUESTS_CA_BUNDLE"
    assert load_settings(env={"SSL_CERT_FILE": str(b)}).ca_bundle == b


@pytest.fixture
def https_hub(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """A Hub answering revisions over TLS with a private CA; yields (url, CA file, sha)."""
    import json
    import ssl
    from http.server import BaseHTTPRequestHandler

    from tests.serverkit import tiny_server

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed (needed to make a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    sha = "a" * 40

    def do_get(h: BaseHTTPRequestHandler) -> None:
        body = json.dumps({"id": "M3LEO-miniset/europe", "sha": sha}).encode()
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with tiny_server(do_get, tls=ctx) as url:
        yield url, cert, sha


def test_ca_bundle_is_trusted_for_https(tmp_path: Path, https_hub) -> None:
    """A Hub behind a private CA (a corporate TLS proxy, a site mirror): REQUESTS_CA_BUNDLE."""
    from m3leo_cli.hub.client import HubClient

    url, cert, sha = https_hub
    plain = load_settings({"endpoint": url, "data_dir": tmp_path}, env={})
    with HubClient(plain) as c, pytest.raises(HubConnectionError) as exc:
        c.revision("M3LEO-miniset/europe")
    assert "CERTIFICATE_VERIFY_FAILED" in exc.value.message
    env = {"REQUESTS_CA_BUNDLE": str(cert)}
    trusting = load_settings({"endpoint": url, "data_dir": tmp_path}, env=env)
    with HubClient(trusting) as c:
        assert c.revision("M3LEO-miniset/europe") == sha


def test_https_goes_through_a_connect_tunnel(tmp_path: Path, https_hub, proxy) -> None:
    """An https:// Hub behind HTTPS_PROXY: a CONNECT to the proxy, TLS to the Hub inside it."""
    from m3leo_cli.hub.client import HubClient

    url, cert, sha = https_hub
    proxy_url, log = proxy
    env = {"HTTPS_PROXY": proxy_url, "NO_PROXY": "", "REQUESTS_CA_BUNDLE": str(cert)}
    st = load_settings({"endpoint": url, "data_dir": tmp_path}, env=env)
    with HubClient(st) as c:
        assert c.revision("M3LEO-miniset/europe") == sha
        assert c.revision("M3LEO-miniset/europe") == sha  # the tunnel is kept and reused
    hostport = url.removeprefix("https://")
    lines = _proxied_requests(log)
    assert len(lines) == 1 and lines[0].startswith(f"CONNECT {hostport} HTTP/1.")


def test_proxy_credentials_from_the_proxy_url(info, tmp_path: Path) -> None:
    """``http://user:pass@proxy`` sends Basic Proxy-Authorization; without it the proxy's
    407 ends in one error naming the proxy."""
    with _tinyproxy(tmp_path / "tp", "BasicAuth m3 pass_w0rd\n") as (url, _):
        with serve(info) as srv:
            good = url.replace("://", "://m3:pass%5Fw0rd@")  # percent-decoded, as curl does
            st = load_settings(
                {"endpoint": srv.url, "data_dir": tmp_path / "d"},
                env={"HTTP_PROXY": good, "NO_PROXY": ""},
            )
            res = download(st, SEL)
            assert isinstance(res, DownloadSummary) and res.failed == 0
            assert local_files(tmp_path / "d") == expected_files(info, "gssic")
            bad = load_settings(
                {"endpoint": srv.url, "data_dir": tmp_path / "e"},
                env={"HTTP_PROXY": url, "NO_PROXY": ""},
            )
            with pytest.raises(M3leoError) as exc:
                download(bad, SEL)
            assert "407" in exc.value.message and "user:password@" in (exc.value.hint or "")


def test_a_socks_proxy_is_refused_with_the_fix(tmp_path: Path) -> None:
    from m3leo_cli.errors import ConfigError
    from m3leo_cli.hub.client import HubClient

    st = load_settings(
        {"endpoint": "http://hub.invalid", "data_dir": tmp_path},
        env={"ALL_PROXY": "socks5://u:pw@127.0.0.1:1080"},
    )
    with HubClient(st) as c, pytest.raises(ConfigError) as exc:
        c.revision("M3LEO-miniset/europe")
    assert "socks5://u:***@127.0.0.1:1080" in exc.value.message  # no password shown
    assert "HTTPS_PROXY" in (exc.value.hint or "")
