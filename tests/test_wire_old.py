"""The HTTP/1.1 engine (hub/http11.py under hub/wire.py) against a real socket server that
answers byte for byte what each test scripts: body framings (length, chunked, to the close),
answers without a body, keep-alive and its end, and servers that misbehave."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from m3leo_cli.config import load_settings
from m3leo_cli.hub.wire import ReadError, RemoteProtocolError, Response, Wire


@dataclass
class Scripted:
    """A loopback server: the n-th request on any connection gets ``answers[n]`` (bytes sent
    in ``piece``-sized writes); ``close_after`` closes the connection after that answer."""

    answers: list[bytes]
    piece: int = 0
    pause: float = 0.0  # seconds between two pieces (a slow link)
    close_after: set[int] = field(default_factory=set)
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    url: str = ""


@contextmanager
def scripted(script: Scripted) -> Iterator[Scripted]:
    listener = socket.create_server(("127.0.0.1", 0))
    script.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    lock = threading.Lock()

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                with lock:
                    n = len(script.requests)
                    script.requests.append(head + b"\r\n\r\n" + body)
                answer = script.answers[n]
                step = script.piece or len(answer) or 1
                for i in range(0, len(answer), step):
                    try:
                        conn.sendall(answer[i : i + step])
                    except OSError:
                        return  # the client gave up on this answer
                    if script.pause:
                        time.sleep(script.pause)
                if n in script.close_after:
                    conn.shutdown(socket.SHUT_RDWR)
                    return

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with lock:
                script.connections += 1
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield script
    finally:
        listener.close()


_wires: list[Wire] = []


def wire() -> Wire:
    """An engine whose pooled connections are closed after the test."""
    w = Wire(load_settings({"timeout": 5}, env={}))
    _wires.append(w)
    return w


@pytest.fixture(autouse=True)
def _close_wires() -> Iterator[None]:
    yield
    while _wires:
        _wires.pop().close()


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


def test_informational_answers_are_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
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
        with pytest.raises(RemoteProtocolError, match="bytes of the body missing"):
            body_of(w.send("GET", srv.url, {}))
        assert body_of(w.send("GET", srv.url, {})) == b"hello"


def test_bytes_beyond_the_announced_body_end_the_connection() -> None:
    with scripted(Scripted([OK + b"HTTP/1.1 200 OK\r\n\r\njunk", OK])) as srv:
        w = wire()
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
        assert body_of(w.send("GET", srv.url, {})) == b"hello"  # not the junk
    assert srv.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\nhello".encode("latin-1"),
        "HTTP/1.1 2\u00b20 OK\r\nContent-Length: 0\r\n\r\n".encode("latin-1"),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" * 9 + OK,
    ],
)
def test_answers_that_are_not_http_are_protocol_errors(answer: bytes) -> None:
    with scripted(Scripted([answer], close_after={0})) as srv:
        with pytest.raises(RemoteProtocolError) as exc:
            body_of(wire().send("GET", srv.url, {}))
    assert exc.value.url == srv.url


def test_a_connection_closed_mid_head_is_a_protocol_error() -> None:
    with scripted(Scripted([b"HTTP/1.1 200 OK\r\nContent-Le"], close_after={0})) as srv:
        with pytest.raises(RemoteProtocolError, match="middle of an answer's head"):
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
    assert srv.requests[0].endswith(b"\r\nContent-Length: 8\r\n\r\n" + b'{"a": 1}')


def test_a_header_value_with_a_line_break_is_refused_before_sending() -> None:
    with scripted(Scripted([OK])) as srv:
        with pytest.raises(ValueError, match="line break"):
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


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    ],
)
def test_framing_that_smells_of_smuggling_is_read_once_and_not_trusted_further(
    answer: bytes,
) -> None:
    """Chunked beside a Content-Length, or in an HTTP/1.0 answer (RFC 9112, 6.1 and 6.3): the
    chunks are the body, and the connection carries nothing more."""
    with scripted(Scripted([answer, OK])) as srv:
        w = wire()
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
        assert body_of(w.send("GET", srv.url, {})) == b"hello"
    assert srv.connections == 2


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
    from m3leo_cli.hub.wire import ProxyError

    accepted = b"HTTP/1.1 200 Connection established\r\n\r\nGARBAGE"
    with scripted(Scripted([accepted], close_after={0})) as proxy:
        settings = load_settings({"timeout": 5}, env={"HTTPS_PROXY": proxy.url})
        w = Wire(settings)
        _wires.append(w)
        with pytest.raises((RemoteProtocolError, ProxyError), match="after accepting the tunnel"):
            w.send("GET", "https://hub.example:443/api/x", {})
    assert proxy.requests[0].startswith(b"CONNECT hub.example:443 HTTP/1.1\r\n")


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
