"""`m3leo serve` against hostile clients: raw sockets sending exact bytes (issue 23, B3, B10).

Each case is what a client anywhere on the network could send to a mirror started with
``--host 0.0.0.0``: bodies far over any legitimate size, lengths that are not numbers, floods
of headers, over-long lines, methods the server does not take, more connections than it serves
at once, and links planted in the served folder. The server must answer each with a proper
status, keep its memory and threads bounded, and never print a traceback.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from m3leo_cli.server import HubServer
from m3leo_cli.server.limits import MAX_BODY
from tests.serverkit import IDS, PART, REPO, build_repo

PATHS_INFO = f"/api/datasets/{REPO}/paths-info/main"
REVISION = f"/api/datasets/{REPO}/revision/main"


class Served:
    """A `m3leo serve` child process, its ports and the file its stderr goes to."""

    def __init__(self, folder: Path, log: Path, *extra: str) -> None:
        self.log = log
        self._err = open(log, "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "m3leo_cli", "serve", str(folder), "--port", "0", *extra],
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 60
        while "HF_ENDPOINT=" not in (text := log.read_text()):
            assert self.proc.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.05)
        endpoint = text.split("HF_ENDPOINT=", 1)[1].split()[0]
        self.port = int(endpoint.rsplit(":", 1)[1])
        self.content_port = int(text.split("LFS bytes on ", 1)[1].split(")")[0].rsplit(":", 1)[1])

    def status(self, field: str) -> int:
        """A number from /proc/<pid>/status: ``VmRSS`` in kB, ``Threads``."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(field)

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self._err.close()
        return self.log.read_text()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile-src")
    build_repo(root)
    return root


@pytest.fixture(scope="module")
def served(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(folder, tmp_path_factory.mktemp("hostile-log") / "stderr.txt")
    yield server
    err = server.stop()
    assert "Traceback" not in err, err


@pytest.fixture(autouse=True)
def _stderr_stays_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every case that used the shared server: not one traceback on its stderr."""
    yield
    if "served" in request.fixturenames:
        server: Served = request.getfixturevalue("served")
        text = server.log.read_text()
        assert "Traceback" not in text and "Error" not in text, text


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    closed: bool  # the server said "Connection: close" and did close

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def answer_on(sock: socket.socket, method: str = "GET") -> Answer:
    """Read one answer from ``sock`` (parsed by http.client); see whether the server closed."""
    resp = http.client.HTTPResponse(sock, method=method)
    try:
        resp.begin()
        body = resp.read()
    finally:
        resp.close()
    closed = False
    if resp.getheader("Connection") == "close":
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
    return Answer(resp.status, resp.headers, body, closed)


def exchange(port: int, data: bytes, method: str = "GET") -> Answer:
    """Send exact bytes on a fresh connection; the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(data)
        return answer_on(sock, method)


# --------------------------------------------------------------------------- request bodies (B3)


def test_a_600_mb_post_is_refused_413_and_the_server_stays_under_100_mb(served: Served) -> None:
    """The issue's done-when: under 100 MB RSS while a 600 MB body is posted to it."""
    size = 600 << 20
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=20)
    sock.sendall(
        f"POST {PATHS_INFO} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n".encode()
    )
    chunk = b" " * (1 << 20)
    peak = served.status("VmRSS")
    sent = 0
    try:
        while sent < size:
            sock.sendall(chunk)
            sent += len(chunk)
            if sent % (16 << 20) == 0:
                peak = max(peak, served.status("VmRSS"))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and stopped listening: the rest never left
    peak = max(peak, served.status("VmRSS"))
    with sock:
        answer = answer_on(sock, "POST")
    assert peak < 100 * 1024, f"server RSS reached {peak} kB"
    assert answer.status == 413 and answer.closed
    assert str(MAX_BODY) in (answer.header("X-Error-Message") or "")
    assert exchange(served.port, f"GET {REVISION} HTTP/1.1\r\n\r\n".encode()).status == 200


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("Content-Length: 1e12", 400),
        ("Content-Length: -5", 400),
        ("Content-Length: 12abc", 400),
        ("Content-Length: \u00b2", 400),  # a digit to str.isdigit, not to HTTP
        ("Content-Length: 10\r\nContent-Length: 11", 400),
        ("Content-Length: 1000000000000", 413),
        ("Content-Length: " + "9" * 5000, 413),
        (f"Content-Length: {MAX_BODY + 1}", 413),
        ("Transfer-Encoding: chunked", 411),
    ],
)
def test_a_body_length_that_is_not_one_plain_number_under_the_cap_is_refused(
    served: Served, header: str, status: int
) -> None:
    head = f"POST {PATHS_INFO} HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n".encode("latin-1")
    answer = exchange(served.port, head, "POST")
    assert answer.status == status and answer.closed
    assert (answer.header("Content-Type") or "").startswith("application/json")


def test_a_refused_head_request_gets_no_body(served: Served) -> None:
    head = f"HEAD {REVISION} HTTP/1.1\r\nHost: x\r\nContent-Length: 1e12\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
        sock.sendall(head)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status, _, rest = raw.partition(b"\r\n")
    assert status == b"HTTP/1.1 400 Bad Request"
    assert rest.endswith(b"\r\n\r\n") and b"Content-Length: 52" in rest  # the head alone


def test_expect_100_continue_gets_413_before_the_body_or_100_then_the_answer(
    served: Served,
) -> None:
    big = (
        f"POST {PATHS_INFO} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        f"Content-Length: {600 << 20}\r\n\r\n"
    ).encode()
    answer = exchange(served.port, big, "POST")
    assert answer.status == 413 and answer.closed
    body = b'{"paths": ["README.md"]}'
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
        sock.sendall(
            f"POST {PATHS_INFO} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = answer_on(sock, "POST")
    assert answer.status == 200 and b'"README.md"' in answer.body


def test_a_body_on_a_route_that_takes_none_is_not_read_and_ends_the_connection(
    served: Served,
) -> None:
    # were the body read as the next request, "GET /x" would get its own answer
    smuggled = b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
    head = f"GET {REVISION} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n"
    answer = exchange(served.port, head.encode() + smuggled)
    assert answer.status == 200 and answer.closed  # and no second answer


def test_a_deeply_nested_json_body_is_an_empty_answer_not_a_crash(served: Served) -> None:
    body = b"[" * 500_000
    head = (
        f"POST {PATHS_INFO} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = exchange(served.port, head + body, "POST")
    assert answer.status == 200 and answer.body == b"[]"
    batch = f"/datasets/{REPO}.git/info/lfs/objects/batch"
    head = f"POST {batch} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    assert exchange(served.port, head + body, "POST").status == 422


@pytest.mark.parametrize(
    "body",
    [
        b'{"operation": "download", "objects": [{"oid": "a", "size": 1e400}]}',
        b'{"operation": "download", "objects": [{"oid": "a", "size": NaN}]}',
        b'{"operation": "download", "objects": [{"oid": "a", "size": "x"}]}',
        b'{"operation": "download", "objects": {"oid": "a"}}',
        b'{"operation": "download", "objects": [{"oid": "a", "size": ' + b"9" * 5000 + b"}]}",
        b"\xff\xfe",
    ],
)
def test_a_malformed_lfs_batch_body_is_422(served: Served, body: bytes) -> None:
    batch = f"/datasets/{REPO}.git/info/lfs/objects/batch"
    head = f"POST {batch} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    assert exchange(served.port, head.encode() + body, "POST").status == 422


# ------------------------------------------------------------------- heads and methods (B10)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(101)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-Many: " + b"b" * 1000 + b"\r\n" * 1 + b"".join(
            b"X-%d: " % i + b"c" * 1000 + b"\r\n" for i in range(70)) + b"\r\n", 431),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/9.9\r\n\r\n", 505),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"\xff\xfe\x00garbage\r\n\r\n", 400),
    ],
    ids=["101-headers", "70k-header", "70k-of-headers", "70k-line", "9k-line", "version",
         "words", "garbage"],
)  # fmt: skip
def test_malformed_heads_get_a_status_and_no_traceback(
    served: Served, request_bytes: bytes, status: int
) -> None:
    answer = exchange(served.port, request_bytes)
    assert answer.status == status and answer.closed


def test_99_headers_are_fine(served: Served) -> None:
    head = f"GET {REVISION} HTTP/1.1\r\n".encode()
    head += b"".join(b"X-%d: a\r\n" % i for i in range(99)) + b"\r\n"
    assert exchange(served.port, head).status == 200


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT"])
def test_known_methods_the_server_does_not_take_get_405_with_allow(
    served: Served, method: str
) -> None:
    target = "*" if method == "OPTIONS" else REVISION
    answer = exchange(served.port, f"{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.status == 405 and answer.header("Allow") == "GET, HEAD, POST"
    assert answer.closed
    answer = exchange(served.content_port, f"{method} / HTTP/1.1\r\n\r\n".encode())
    assert answer.status == 405 and answer.header("Allow") == "GET, HEAD"


@pytest.mark.parametrize("method", ["BREW", "PROPFIND", "get"])
def test_unknown_methods_get_501(served: Served, method: str) -> None:
    answer = exchange(served.port, f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.status == 501 and answer.closed


def test_a_missing_repo_says_this_mirror_has_none_in_the_hubs_error_format(
    served: Served,
) -> None:
    answer = exchange(
        served.port, b"GET /api/datasets/M3LEO-miniset/china/revision/main HTTP/1.1\r\n\r\n"
    )
    assert answer.status == 404 and answer.header("X-Error-Code") == "RepoNotFound"
    assert answer.header("X-Error-Message") == "this mirror has no M3LEO-miniset/china"
    assert answer.body == b'{"error": "this mirror has no M3LEO-miniset/china"}'


@pytest.mark.parametrize(
    "path",
    [
        "/api/datasets/M3LEO-miniset/%ff%fe/revision/main",
        "/api/datasets/M3LEO-miniset/x%0d%0aSet-Cookie:%20owned/revision/main",
        f"/datasets/{REPO}/resolve/main/caf%C3%A9%0d%0aX-Evil:%201.tif",
        f"/api/datasets/{REPO}/revision/%e2%82%ac%0aX-Evil:%201",
    ],
)
def test_what_the_client_sent_never_breaks_or_splits_an_error_header(
    served: Served, path: str
) -> None:
    answer = exchange(served.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.status == 404 and answer.header("X-Error-Code")
    message = answer.header("X-Error-Message") or ""
    assert message.isascii() and message.isprintable()
    assert answer.header("Set-Cookie") is None and answer.header("X-Evil") is None


# --------------------------------------------------------------------------- connections


def test_connections_beyond_the_cap_get_503_and_threads_stay_bounded(
    folder: Path, tmp_path: Path
) -> None:
    server = Served(folder, tmp_path / "stderr.txt", "--max-connections", "4")
    held: list[socket.socket] = []
    try:
        for _ in range(4):  # four keep-alive connections, each answered once, then idle
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            held.append(sock)
            sock.sendall(f"GET {REVISION} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = answer_on(sock)
            assert answer.status == 200 and answer.header("Connection") != "close"
        threads = server.status("Threads")
        for _ in range(200):
            answer = exchange(server.port, f"GET {REVISION} HTTP/1.1\r\n\r\n".encode())
            assert answer.status == 503 and answer.header("Retry-After") == "1"
            assert answer.closed
        assert server.status("Threads") == threads  # no thread per refused connection
        held.pop().close()  # one slot frees once the server sees the close
        deadline = time.monotonic() + 20
        while (
            status := exchange(server.port, f"GET {REVISION} HTTP/1.1\r\n\r\n".encode()).status
        ) == 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status == 200
    finally:
        for sock in held:
            sock.close()
        err = server.stop()
    assert "Traceback" not in err


def test_an_idle_keep_alive_connection_is_closed_by_the_server(folder: Path) -> None:
    with HubServer(folder, idle_timeout=0.3) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
            sock.sendall(f"GET {REVISION} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = answer_on(sock)
            assert answer.status == 200 and answer.header("Connection") != "close"
            assert sock.recv(1) == b""  # the server hung up on the idle connection
        assert srv.wait_idle(20)


def _trickle(port: int, start: bytes, drip: bytes) -> bool:
    """Send ``start``, then ``drip`` a byte at a time; True once the server has hung up."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(start)
        deadline = time.monotonic() + 20
        sock.settimeout(0.05)
        for byte in drip:
            assert time.monotonic() < deadline, "the server kept listening to the trickle"
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    return True
            except TimeoutError:
                continue  # nothing from the server yet: keep dripping
            except (BrokenPipeError, ConnectionResetError):
                return True
    return False


@pytest.mark.parametrize(
    ("start", "drip"),
    [
        (b"", f"GET {REVISION} HTTP/1.1\r\n".encode() * 20),  # the request line itself
        (f"GET {REVISION} HTTP/1.1\r\n".encode(), b"X-Slow: " + b"a" * 2000),  # a header
        (
            f"POST {PATHS_INFO} HTTP/1.1\r\nContent-Length: 5000\r\n\r\n".encode(),
            b"p" * 5000,
        ),  # the body
    ],
    ids=["request-line", "header", "body"],
)
def test_a_request_trickled_in_is_ended_by_the_request_timeout(
    folder: Path, start: bytes, drip: bytes
) -> None:
    """Slowloris: each byte comes before the socket timeout, the whole never does."""
    with HubServer(folder, request_timeout=0.5) as srv:
        assert _trickle(srv.port, start, drip)
        assert srv.wait_idle(20)
        answer = exchange(srv.port, f"GET {REVISION} HTTP/1.1\r\n\r\n".encode())
        assert answer.status == 200  # and the server goes on serving


# --------------------------------------------------------------------------- links in the folder


NC = f"{PART}/gssic/{IDS[0]}.nc"
TIF = f"{PART}/s1grd-2020/{IDS[1]}.tif"


def _get(port: int, path: str) -> Answer:
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())


def test_hard_links_are_not_served_and_are_reported_once(tmp_path: Path) -> None:
    files = build_repo(tmp_path / "src")
    repo = tmp_path / "src" / REPO
    outside = tmp_path / "outside.txt"
    outside.write_text("top secret")
    os.link(outside, repo / "leak.txt")  # a second name for a file outside the folder
    warnings: list[str] = []
    with HubServer(tmp_path / "src", on_warning=warnings.append) as srv:
        listing = _get(srv.port, f"/api/datasets/{REPO}/tree/main?recursive=true")
        assert listing.status == 200
        for _ in range(3):
            assert _get(srv.port, f"/datasets/{REPO}/resolve/main/leak.txt").status == 404
        assert srv.commit(REPO)  # rescans do not repeat the warning
        assert [w for w in warnings if "leak.txt" in w] == [
            f"not serving {repo / 'leak.txt'}: a hard link (2 names for one file; the others "
            "may be outside the folder)"
        ]
        # a file given a second name after it was indexed is refused when it is opened
        r = _get(srv.port, f"/datasets/{REPO}/resolve/main/README.md")
        assert r.status == 200
        os.link(repo / "README.md", tmp_path / "readme-elsewhere.md")
        assert _get(srv.port, f"/datasets/{REPO}/resolve/main/README.md").status == 404
        assert files["README.md"] == (repo / "README.md").read_bytes()


def test_a_file_swapped_for_a_symlink_out_of_the_folder_is_not_served(tmp_path: Path) -> None:
    build_repo(tmp_path / "src")
    repo = tmp_path / "src" / REPO
    outside = tmp_path / "outside.tif"
    outside.write_bytes(b"top secret")
    warnings: list[str] = []
    with HubServer(tmp_path / "src", on_warning=warnings.append) as srv:
        loc = exchange(
            srv.port, f"HEAD /datasets/{REPO}/resolve/main/{TIF} HTTP/1.1\r\n\r\n".encode(), "HEAD"
        )
        assert loc.status == 302
        content = (loc.header("Location") or "").split(f":{srv.content_port}", 1)[1]
        target = repo / TIF
        size, mtime = target.stat().st_size, target.stat().st_mtime_ns
        outside.write_bytes(os.urandom(size))
        os.utime(outside, ns=(mtime, mtime))  # same size and time: only the open can tell
        target.unlink()
        target.symlink_to(outside)
        r = _get(srv.content_port, content)
        assert r.status == 404
        srv.rescan(REPO)
        assert any(w.startswith(f"not serving {target}: a symlink to ") for w in warnings)
