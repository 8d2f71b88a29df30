"""What both origins of ``m3leo serve`` share: request plumbing, faults, JSON and file replies.

:class:`BaseHandler` turns a request into a route call and an answer (with the fault injection
every origin honours); ``handler`` adds the Hub's API and the content host on top.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, NoReturn, Protocol
from urllib.parse import unquote

from . import limits as L
from . import protocol as P
from .faults import FaultCounters, Faults, RequestRecord
from .index import FileEntry, RepoIndex, Snapshot, open_served
from .realhub import RealHub

_JSON = "application/json; charset=utf-8"


class ServerState(Protocol):
    """What a handler needs from the server that owns it (``hub.HubServer`` is one).

    A protocol rather than an import keeps the handlers below the server in the module graph.
    """

    faults: Faults
    log: list[RequestRecord]
    keep_log: bool
    page_size: int
    content_port: int
    access_log: bool
    idle_timeout: float
    request_timeout: float
    real: RealHub | None
    _counters: FaultCounters
    _netloc: str
    _root_real: str

    def _repo(self, org: str, name: str) -> RepoIndex | None: ...

    def _missing(self, org: str, name: str) -> str: ...


class _Done(Exception):
    """The answer has been sent; unwind to the dispatcher."""


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "m3leo-serve"
    sys_version = ""
    origin = "hub"
    allow = "GET, HEAD, POST"  # what the origin takes at all (the Allow of a 405 OPTIONS)

    # ------------------------------------------------------------------ plumbing

    @property
    def hub(self) -> ServerState:
        return self.server.hub  # type: ignore[attr-defined, no-any-return]

    def setup(self) -> None:
        super().setup()
        # Every read and write; between requests it is how long an idle keep-alive connection
        # keeps its worker thread.
        self.connection.settimeout(self.hub.idle_timeout)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.hub.access_log:
            sys.stderr.write(f"{self.origin} {self.client_address[0]} {format % args}\n")

    def _begin(self, method: str, raw_path: str = "", query: str = "") -> None:
        """A fresh record for the request now being read (also for one refused unparsed)."""
        self._method = method
        self._more_headers: dict[str, str] = {}
        self._body_left = 0  # announced body bytes not read (yet)
        headers = getattr(self, "headers", None) if method else None
        self._record = RequestRecord(
            method=method,
            path=unquote(raw_path),
            query=query,
            status=0,
            headers={k.lower(): v for k, v in headers.items()} if headers else {},
            origin=self.origin,
            range=headers.get("Range") if headers else None,
        )

    def handle_one_request(self) -> None:
        """The stdlib's loop step with the limits of :mod:`.limits` (nothing read past them)."""
        self._begin("")
        watchdog = self.server.watchdog  # type: ignore[attr-defined]
        try:
            if not self.rfile.peek(1):  # type: ignore[attr-defined]  # idle: the first byte
                self.close_connection = True
                return
            watchdog.arm(self.connection, self.hub.request_timeout)  # then the whole head
            line = self.rfile.readline(L.MAX_REQUEST_LINE + 1)
            if not line:
                self.close_connection = True
                return
            self.command, self.request_version, self.requestline = "", "", ""
            if len(line) > L.MAX_REQUEST_LINE:
                raise L.Refused(414, f"request line longer than {L.MAX_REQUEST_LINE} bytes")
            self.raw_requestline = line
            head = L.read_head(self.rfile.readline)
            if head is None:  # the client left half-way through its head (or took too long)
                self.close_connection = True
                return
            watchdog.disarm(self.connection)
            conn_rfile, self.rfile = self.rfile, io.BytesIO(head)
            try:
                parsed = self.parse_request()  # the stdlib's own request-line and header parser
            finally:
                self.rfile = conn_rfile
            if not parsed:
                return  # answered (send_error) or nothing to answer
            if self.request_version == "HTTP/0.9":  # "GET /": no headers, no status line
                raise L.Refused(505, "HTTP/0.9 is not supported; send HTTP/1.1")
            if self.command in L.NOT_ALLOWED:
                self._not_allowed()
            elif not hasattr(self, "do_" + self.command):
                self.send_error(501, f"method {self.command[:20]!r} is not implemented")
            else:
                getattr(self, "do_" + self.command)()
            self.wfile.flush()
        except L.Refused as exc:
            self.send_error(exc.status, exc.message)
        except (TimeoutError, ConnectionError):
            self.close_connection = True  # an idle keep-alive connection, or a stalled client
        finally:
            watchdog.disarm(self.connection)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: refuse a body over the limit before the client sends it."""
        try:
            L.body_length(self.headers)
        except L.Refused as exc:
            self.send_error(exc.status, exc.message)
            return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every refusal before routing (the stdlib's and ours): Hub-style JSON, then close.

        The stdlib calls this for a request it cannot parse; it must not need ``_dispatch``.
        """
        self.close_connection = True
        if self.command == "HEAD":  # a refusal of a HEAD has no body either
            self._method = "HEAD"
        if self.request_version in ("", "HTTP/0.9"):  # an unparsed line: answer in HTTP/1.1,
            self.request_version = "HTTP/1.1"  # not the bare body the stdlib sends to HTTP/0.9
        text = L.header_text(message or HTTPStatus(code).phrase)
        self.log_error("refused (%d): %s", code, text)
        self._reply_nothrow(code, json.dumps({"error": text}).encode(), {"X-Error-Message": text})
        if code == 413:  # the client may still be sending: let it read the answer first
            self.wfile.flush()
            L.linger(self.connection)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._record.status = code
        super().send_response(code, message)

    def end_headers(self) -> None:
        for k, v in self._more_headers.items():  # the real Hub's RateLimit, on every answer
            self.send_header(k, v)
        if self._body_left and not self.close_connection:
            # an unread body would be taken for the next request: end the connection instead
            self.send_header("Connection", "close")
        super().end_headers()

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() or None if auth.lower().startswith("bearer ") else None

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _not_allowed(self) -> None:
        """A method this read-only server never takes: ``405`` with ``Allow``, body unread."""
        self._begin(self.command, *self.path.partition("?")[::2])
        self._log_record()
        self.close_connection = True
        text = f"{self.command} is not allowed here"
        doc = json.dumps({"error": text}).encode()
        self._reply_nothrow(405, doc, {"Allow": self.allow, "X-Error-Message": text})

    def _log_record(self) -> None:
        if self.hub.keep_log:
            self.hub.log.append(self._record)

    def _dispatch(self, method: str) -> None:
        raw_path, _, query = self.path.partition("?")
        # Logged on arrival (so the log is in causal order), completed as the answer goes out.
        self._begin(method, raw_path, query)
        self._log_record()
        faults = self.hub.faults
        try:
            try:
                self._body_left = L.body_length(self.headers)
            except L.Refused as exc:
                self.send_error(exc.status, exc.message)
                return
            if faults.latency_ms > 0:
                time.sleep(faults.latency_ms / 1000)
            self._route(method, raw_path, query, faults)
        except _Done:
            pass
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        """The request body (at most :data:`limits.MAX_BODY`, checked on arrival); read once,
        by the routes that take one."""
        n, self._body_left = self._body_left, 0
        watchdog = self.server.watchdog  # type: ignore[attr-defined]
        watchdog.arm(self.connection, self.hub.request_timeout)
        try:
            body = self.rfile.read(n) if n else b""
        finally:
            watchdog.disarm(self.connection)
        if len(body) < n:
            raise ConnectionError("the client closed before sending its whole body")
        return body

    def _sending(self, n: int) -> None:
        """Note the body bytes about to be written (before writing: a client may be faster)."""
        self._record.bytes_sent = n

    def _route(self, method: str, raw: str, query: str, faults: Faults) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ answers

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        ctype: str = _JSON,
        headers: dict[str, str] | None = None,
    ) -> NoReturn:
        self._reply_nothrow(status, body, headers, ctype)
        raise _Done

    def _reply_nothrow(
        self, status: int, body: bytes, headers: dict[str, str] | None, ctype: str = _JSON
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self._method != "HEAD":
            self._sending(len(body))
            self.wfile.write(body)

    def _json(self, doc: object, headers: dict[str, str] | None = None) -> NoReturn:
        self._json_bytes(json.dumps(doc, separators=(",", ":")).encode(), headers)

    def _json_bytes(self, body: bytes, headers: dict[str, str] | None = None) -> NoReturn:
        if self.hub.faults.garbage_json:
            self._reply(200, b'{"id": "M3LEO-miniset/eu', headers=headers)
        self._reply(200, body, headers=headers)

    def _error(
        self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None
    ) -> NoReturn:
        h = dict(headers or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = L.header_text(message)
        self._reply(status, json.dumps({"error": message}).encode(), headers=h)

    def _common_faults(self, raw: str, faults: Faults, bucket: str) -> None:
        """429 and error-status faults: the first N requests per URL path."""
        key = f"{self.origin}:{unquote(raw)}"
        counters = self.hub._counters
        if counters.take("rate", key, faults.rate_limit_first):
            t = faults.retry_after
            self._error(
                429,
                None,
                "You have been rate-limited; retry later.",
                {
                    "Retry-After": str(t),
                    "RateLimit": f'"{bucket}";r=0;t={t}',
                    "RateLimit-Policy": f'"fixed window";"{bucket}";q=500;w=300',
                },
            )
        if counters.take("error", key, faults.error_first):
            self._error(faults.error_status, None, "Injected server error")

    def _path_status(self, repo_id: str, path: str, faults: Faults, extra: dict[str, str]) -> None:
        status = faults.status_for_paths.get(path) or faults.status_for_paths.get(
            f"{repo_id}/{path}"
        )
        if status:
            code = "EntryNotFound" if status == 404 else None
            self._error(status, code, f"Injected status {status} for {path}", extra)

    def _lookup(self, index: RepoIndex, path: str) -> tuple[Snapshot, FileEntry | None]:
        """The file in the current snapshot; rescans only if the file itself changed on disk."""
        snap = index.snapshot()
        entry = snap.files.get(path)
        if entry is not None:
            try:
                st = os.stat(entry.abspath)
                if st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns:
                    return snap, entry
            except OSError:
                pass
        elif not P.safe_repo_path(path) or not index.may_hold(path):
            return snap, None
        snap = index.rescan()
        return snap, snap.files.get(path)

    def _send_file(
        self,
        entry: FileEntry,
        faults: Faults,
        extra: dict[str, str],
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> None:
        """Whole file or one range, with the faults that touch bytes.

        ``etag``/``last_modified`` replace the mirror's validators (the sha256 or git oid) with a
        CDN's own; a Range whose ``If-Range`` matches neither gets the whole file (RFC 9110).
        """
        size, etag = entry.size, etag or entry.etag
        headers = {"ETag": f'"{etag}"', "Accept-Ranges": "bytes", **extra}
        if last_modified:
            headers["Last-Modified"] = last_modified
        rng = None
        if not faults.ignore_range:
            validator = self.headers.get("If-Range")
            if (
                validator is None
                or P.etag_matches(validator, etag)
                or (last_modified is not None and validator.strip() == last_modified)
            ):
                rng = P.parse_range(self.headers.get("Range"), size)
        if rng == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{size}"
            self._error(416, None, "Requested range not satisfiable", headers)
        if isinstance(rng, tuple):
            start, end = rng
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        else:
            start, end, status = 0, size - 1, 200
        count = end - start + 1
        try:
            f = os.fdopen(open_served(entry, self.hub._root_real), "rb")
        except OSError:
            self._error(404, "EntryNotFound", f"{entry.path} is gone", extra)
            return
        with f:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(count))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self._method == "HEAD" or count <= 0:
                raise _Done
            key = f"{self.hub_repo}/{entry.path}"
            counters = self.hub._counters
            cut = faults.cut_after_bytes is not None and counters.take("cut", key, faults.cut_first)
            corrupt = counters.take("corrupt", key, faults.corrupt_first)
            if not (cut or corrupt or faults.extra_bytes):
                self._sending(count)
                self.connection.sendfile(f, start, count)
                raise _Done
            f.seek(start)
            data = bytearray(f.read(count))
        if corrupt and data:
            data[len(data) // 2] ^= 0xFF
        if cut:
            data = data[: max(0, faults.cut_after_bytes or 0)]
        self._sending(len(data) + (0 if cut else faults.extra_bytes))
        self.wfile.write(bytes(data))
        if cut:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            raise _Done
        if faults.extra_bytes:
            self.wfile.write(b"\0" * faults.extra_bytes)
            self.close_connection = True
        raise _Done

    hub_repo = ""
