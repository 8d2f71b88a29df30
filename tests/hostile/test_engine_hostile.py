"""The Hub engine (hub/wire.py on urllib3) against a loopback server that answers byte for
byte what each test scripts (tests/scripted.py): body framings, answers without a body,
keep-alive and its end, and servers that misbehave -- the hostile review's B4-B7 and B11 and
the whole-answer deadlines among them (docs/design.md, "The Hub engine")."""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from scripted import Scripted, scripted

from m3leo_cli.config import load_settings
from m3leo_cli.errors import ConfigError
from m3leo_cli.hub.wire import (
    AnswerTooLarge,
    ConnectError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    Response,
    TransportError,
    UnsupportedProtocol,
    Wire,
)

_wires: list[Wire] = []


def wire(**settings: float) -> Wire:
    """An engine whose pooled connections are closed after the test."""
    w = Wire(load_settings({"timeout": 5, **settings}, env={}))
    _wires.append(w)
    return w


@pytest.fixture(autouse=True)
def _close_wires() -> Iterator[None]:
    yield
    while _wires:
        _wires.pop().close()
    gc.collect()  # a socket left open shows up as this test's ResourceWarning, not a later one


def body_of(resp: Response) -> bytes:
    with resp:
        return resp.read()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def test_a_length_body_arriving_in_pieces_and_the_connection_kept() -> None:
    payload = bytes(range(256)) * 40
    first = b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: "x"\r\n\r\n' % len(payload)
    with scripted(Scripted([first + payload, OK], piece=7)) as srv:
        w = wire()
        resp = w.send("GET", srv.url + "/a?b=1", {"x-test": "1"})
        assert resp.status_code == 200 and resp.headers["ETAG"] == '"x"'
        assert body_of(resp) == payload
        assert body_of(w.send("GET", srv.url + "/c", {})) == b"hello"
    assert srv.connections == 1  # kept alive
    assert srv.requests[0].startswith(b"GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nx-test: 1\r\n" in srv.requests[0]


def test_a_chunked_body_with_extensions_and_trailers() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    with scripted(Scripted([answer, OK], piece=3)) as srv:
        w = wire()
        assert body_of(w.send("GET", srv.url, {})) == b"hello world"
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
    assert srv.connections == 1


def test_a_body_without_length_runs_to_the_close_and_the_connection_is_not_kept() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
    with scripted(Scripted([answer, OK], close_after={0})) as srv:
        w = wire()
        assert body_of(w.send("GET", srv.url, {})) == b"all of it"
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
    assert srv.connections == 2


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
    ],
)
def test_answers_without_a_body_leave_the_connection_ready(method: str, answer: bytes) -> None:
    with scripted(Scripted([answer, OK])) as srv:
        w = wire()
        resp = w.send(method, srv.url, {})
        assert resp.at_end() and body_of(resp) == b""
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
    assert srv.connections == 1


def test_a_100_continue_is_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    with scripted(Scripted([answer])) as srv:
        resp = wire().send("GET", srv.url, {})
        assert resp.status_code == 200 and body_of(resp) == b"hello"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ],
)
def test_a_server_that_ends_the_connection_gets_a_fresh_one(answer: bytes) -> None:
    with scripted(Scripted([answer, OK])) as srv:
        w = wire()
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
    assert srv.connections == 2


def test_an_idle_connection_the_server_closed_is_replaced_silently() -> None:
    with scripted(Scripted([OK, OK], close_after={0})) as srv:
        w = wire()
        resp = w.send("GET", srv.url, {})
        assert body_of(resp) == b"hello"  # kept: the answer did not say it would close
        assert body_of(w.send("GET", srv.url, {})) == b"hello"  # stale: sent again, fresh
    assert srv.connections == 2


def test_a_body_cut_short_is_an_error_and_never_read_as_the_next_answer() -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    with scripted(Scripted([short, OK], close_after={0})) as srv:
        w = wire()
        with pytest.raises(RemoteProtocolError, match="91 bytes of the body missing"):
            body_of(w.send("GET", srv.url, {}))
        assert body_of(w.send("GET", srv.url, {})) == b"hello"


def test_bytes_beyond_the_announced_body_are_never_the_next_answer() -> None:
    with scripted(Scripted([OK + b"HTTP/1.1 200 OK\r\n\r\njunk", OK])) as srv:
        w = wire()
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
        assert body_of(w.send("GET", srv.url, {})) == b"hello"  # not the junk


def test_unsolicited_bytes_on_an_idle_connection_are_never_the_next_answer() -> None:
    """B5: a server that sends an answer nobody asked for after a pause."""

    def first(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        time.sleep(0.3)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
        time.sleep(2)

    good = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"
    with scripted(Scripted([first, good])) as srv:
        w = wire()
        assert body_of(w.send("GET", srv.url + "/a", {})) == b"hello"
        time.sleep(0.6)
        assert body_of(w.send("GET", srv.url + "/b", {})) == b"good"
    assert srv.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        # urllib3 refuses this one while building its answer and leaves http.client's file
        # to the garbage collector (a ResourceWarning, no leak past the GC)
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
            marks=pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
        ),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\nhello".encode("latin-1"),
        "HTTP/1.1 2\u00b20 OK\r\nContent-Length: 0\r\n\r\n".encode("latin-1"),
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: \u00b2\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n".encode("latin-1"),
        # B7: a bare LF makes two Content-Length lines; a bare CR or a NUL in a value
        b"HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
        b'HTTP/1.1 200 OK\r\nETag: "a\rb"\r\nContent-Length: 5\r\n\r\nhello',
        b'HTTP/1.1 200 OK\r\nETag: "a\x00b"\r\nContent-Length: 5\r\n\r\nhello',
    ],
)
def test_answers_that_are_not_http_are_protocol_errors(answer: bytes) -> None:
    with scripted(Scripted([answer], close_after={0})) as srv:
        with pytest.raises(RemoteProtocolError) as exc:
            body_of(wire().send("GET", srv.url, {}))
    assert exc.value.url == srv.url


def test_a_connection_closed_mid_head_is_a_protocol_error() -> None:
    with scripted(Scripted([b"HTTP/1.1 200 OK\r\nContent-Le"], close_after={0})) as srv:
        with pytest.raises(RemoteProtocolError, match="malformed answer head"):
            wire().send("GET", srv.url, {})


def test_repeated_headers_are_joined_and_names_are_case_blind() -> None:
    answer = (b"HTTP/1.1 200 OK\r\nLink: <a>; rel=\"next\"\r\nlink: <b>; rel=\"last\"\r\n"
              b"X-Repo-Commit: abc\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
    with scripted(Scripted([answer])) as srv:
        resp = wire().send("GET", srv.url, {})
        with resp:
            assert resp.links == {"next": {"url": "a", "rel": "next"},
                                  "last": {"url": "b", "rel": "last"}}  # fmt: skip
            assert resp.headers.get("x-repo-commit") == resp.headers["X-Repo-Commit"] == "abc"
            assert "X-REPO-COMMIT" in resp.headers and "x-other" not in resp.headers
            assert set(resp.headers) == {"link", "x-repo-commit", "content-length"}


def test_a_post_sends_its_body_with_its_length() -> None:
    with scripted(Scripted([OK])) as srv:
        assert body_of(wire().send("POST", srv.url + "/batch", {}, b'{"a": 1}')) == b"hello"
    assert srv.requests[0].startswith(b"POST /batch HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 8\r\n" in srv.requests[0]
    assert srv.requests[0].endswith(b'\r\n\r\n{"a": 1}')


def test_a_header_value_with_a_line_break_is_refused_before_sending() -> None:
    with scripted(Scripted([OK])) as srv:
        with pytest.raises(ConfigError, match="line break"):
            wire().send("GET", srv.url, {"authorization": "Bearer x\r\nX-Evil: 1"})
    assert srv.requests == []


def test_a_reset_while_reading_the_body_is_a_read_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # linger 0: a reset, not an orderly end

    threading.Thread(target=serve, daemon=True).start()
    try:
        resp = wire().send("GET", url, {})
        with pytest.raises((ReadError, RemoteProtocolError)):
            body_of(resp)
    finally:
        listener.close()


def test_a_body_of_known_length_fills_the_buffer_in_one_read() -> None:
    """A tile smaller than the reader's buffer arrives in one call (the transfer then never
    writes a resume note for it), however many pieces the network cut it into."""
    payload = bytes(range(256)) * 64
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload
    with scripted(Scripted([answer], piece=1000)) as srv:
        with wire().send("GET", srv.url, {}) as resp:
            buf = bytearray(1 << 20)
            assert resp.readinto(buf) == len(payload) and bytes(buf[: len(payload)]) == payload
            assert resp.at_end() and resp.readinto(buf) == 0


def test_bytes_that_came_before_a_failure_are_returned_before_it() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100
    with scripted(Scripted([answer], close_after={0})) as srv:
        with wire().send("GET", srv.url, {}) as resp:
            buf = bytearray(4096)
            assert resp.readinto(buf) == 100
            with pytest.raises(RemoteProtocolError, match="900 bytes of the body missing"):
                resp.readinto(buf)


def test_chunked_beside_a_length_is_refused_and_chunked_in_http10_read_once() -> None:
    """RFC 9112 6.1/6.3: a Content-Length beside Transfer-Encoding is how one answer's bytes
    pass for another's; it is refused. Chunked in an HTTP/1.0 answer: the chunks are the body."""
    both = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    with scripted(Scripted([both, OK])) as srv:
        w = wire()
        with pytest.raises(RemoteProtocolError, match="beside Transfer-Encoding"):
            w.send("GET", srv.url, {})
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
    assert srv.connections == 2
    old = (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    with scripted(Scripted([old, OK])) as srv:
        assert body_of(wire().send("GET", srv.url, {})) == b"hello"


def test_a_folded_header_is_unfolded_and_a_repeated_one_keeps_its_first_value() -> None:
    answer = (
        b'HTTP/1.1 200 OK\r\nX-Note: one\r\n  two\r\nETag: "a"\r\nETag: "b"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    with scripted(Scripted([answer])) as srv:
        with wire().send("GET", srv.url, {}) as resp:
            assert resp.headers["x-note"] == "one two"
            assert resp.headers["etag"] == '"a"'


def test_a_target_with_spaces_or_other_scripts_is_sent_percent_encoded() -> None:
    with scripted(Scripted([OK])) as srv:
        body_of(wire().send("GET", srv.url + "/a b/\u00e9t\u00e9%20x?q=1", {}))
    assert srv.requests[0].startswith(b"GET /a%20b/%C3%A9t%C3%A9%20x?q=1 HTTP/1.1\r\n")


def test_bytes_a_proxy_sends_after_accepting_a_tunnel_end_the_connection(tmp_path) -> None:
    """What follows a CONNECT's 200 must be the TLS handshake: anything the proxy sent first
    would otherwise be read as the answer."""
    from m3leo_cli.hub.wire import ConnectError, ProxyError

    accepted = b"HTTP/1.1 200 Connection established\r\n\r\nGARBAGE"
    with scripted(Scripted([accepted], close_after={0})) as proxy:
        settings = load_settings({"timeout": 5}, env={"HTTPS_PROXY": proxy.url})
        w = Wire(settings)
        _wires.append(w)
        with pytest.raises((ConnectError, ProxyError)):  # never an answer made of the garbage
            w.send("GET", "https://hub.example:443/api/x", {})
    assert proxy.requests[0].startswith(b"CONNECT hub.example:443 HTTP/1.")


def test_on_a_slow_link_a_read_hands_over_what_came_without_waiting_for_a_full_buffer() -> None:
    """The transfer reports progress and sees a cancel between reads: a read that has bytes
    returns after a quarter of a second rather than when the buffer is full (here the body
    takes seconds to arrive)."""
    payload = b"z" * 200_000
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload
    with scripted(Scripted([answer], piece=5000, pause=0.05)) as srv:
        resp = wire().send("GET", srv.url, {})
        n = resp.readinto(bytearray(1 << 20))
        assert 0 < n < len(payload)
        resp.close()  # the rest is not read: the connection goes, not back to the pool


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/x",
        "http://127.0.0.1:abc/x",
        "http://[::1/x",
        "http://\u4f8b\u3048.\u30c6\u30b9\u30c8/x",
        "ftp://example.org/x",
    ],
)
def test_a_malformed_url_is_a_typed_error_naming_it(url: str) -> None:
    """B6: a Location with a bad port, a bad IPv6 or a non-ASCII host."""
    with pytest.raises((UnsupportedProtocol, ConnectError)) as exc:  # an IDN: no such host
        wire().send("GET", url, {})
    assert exc.value.url == url


def _endless_chunks(head: bytes, chunk: bytes = b" " * 65536, pause: float = 0.0):
    def write(conn: socket.socket) -> None:
        conn.sendall(head)
        frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        end = time.monotonic() + 20
        while time.monotonic() < end:
            conn.sendall(frame)
            if pause:
                time.sleep(pause)

    return write


def test_a_capped_read_of_an_endless_answer_stops_at_the_cap() -> None:
    """B4: an endless chunked JSON answer; read(limit) raises past the limit."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with scripted(Scripted([_endless_chunks(head)])) as srv:
        started = time.monotonic()
        with pytest.raises(AnswerTooLarge, match="larger than 1,048,576 bytes"):
            with wire().send("GET", srv.url, {}) as resp:
                resp.read(1 << 20)
        assert time.monotonic() - started < 10


def test_a_redirect_with_an_endless_body_is_discarded_within_bounds() -> None:
    """B11: discard reads at most 64 KiB of a body with no length, then closes."""
    head = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nTransfer-Encoding: chunked\r\n\r\n"
    with scripted(Scripted([_endless_chunks(head, b"x" * 4096, pause=0.01), OK])) as srv:
        w = wire()
        resp = w.send("GET", srv.url, {})
        assert resp.status_code == 302
        started = time.monotonic()
        resp.discard()
        assert time.monotonic() - started < 5
        assert body_of(w.send("GET", srv.url, {})) == b"hello"


def _trickle(head: bytes, body: bytes = b"", every: float = 0.05):
    def write(conn: socket.socket) -> None:
        conn.sendall(head)
        for i in range(len(body)):
            conn.sendall(body[i : i + 1])
            time.sleep(every)

    return write


def test_a_body_trickling_below_the_minimum_rate_ends_in_a_deadline() -> None:
    """Each read gets bytes within the per-read timeout, but the whole answer may not last."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    with scripted(Scripted([_trickle(head, b"x" * 1000)])) as srv:
        w = wire(answer_budget=1.0, min_rate=1000.0)
        started = time.monotonic()
        with pytest.raises(ReadTimeout, match="deadline"):
            body_of(w.send("GET", srv.url, {}))
        assert time.monotonic() - started < 5


def test_a_head_trickling_a_byte_at_a_time_ends_in_a_deadline() -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"s" * 200 + b"\r\n\r\n"
    with scripted(Scripted([_trickle(b"", head)])) as srv:
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            wire(answer_budget=1.0).send("GET", srv.url, {})
        assert time.monotonic() - started < 5


def test_endless_trailers_end_in_a_deadline() -> None:
    def write(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
        end = time.monotonic() + 20
        while time.monotonic() < end:
            conn.sendall(b"X-Trailer: " + b"t" * 100 + b"\r\n")
            time.sleep(0.01)

    with scripted(Scripted([write])) as srv:
        started = time.monotonic()
        with pytest.raises(TransportError):
            body_of(wire(answer_budget=1.0, min_rate=1000.0).send("GET", srv.url, {}))
        assert time.monotonic() - started < 8
