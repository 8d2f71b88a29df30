"""``HubServer``: a folder of repos served over the Hugging Face Hub protocol, on two origins.

The Hub origin answers the API and ``resolve`` calls; LFS files are redirected (302) to a second
port, the content origin, the way the Hub hands bytes to its CDN. Tests use it with fault
injection; ``m3leo serve`` uses it to serve a site mirror to compute nodes.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..errors import ServeError
from .faults import FaultCounters, Faults, RequestRecord
from .handler import ContentHandler, HubHandler
from .hashcache import HashCache
from .index import RepoIndex
from .mirror import Layout
from .pool import DEFAULT_MAX_CONNECTIONS, OriginServer
from .realhub import RealHub

# Seconds a connection may sit idle between requests (or stall inside one) before it is
# closed and its worker thread freed; clients reopen closed keep-alive connections themselves.
IDLE_TIMEOUT = 60.0
# Seconds a request's head (from its first byte), and its body, may take to arrive in all: a
# client trickling bytes cannot hold a worker longer (Hub clients send both in one packet).
REQUEST_TIMEOUT = 30.0


class HubServer:
    """Serves every ``root/<org>/<name>/`` folder as the Hub dataset repo ``<org>/<name>``."""

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 1000,
        faults: Faults | None = None,
        content_port: int = 0,
        access_log: bool = False,
        keep_log: bool = True,
        hash_cache: Path | None = None,
        real: RealHub | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ServeError(
                f"{root} is not a folder",
                "give the folder that holds <org>/<name>/ repo folders, "
                "e.g. DIR/M3LEO-miniset/europe/",
            )
        if page_size < 1:
            raise ServeError(
                f"page size must be at least 1, not {page_size}", "use --page-size 1000"
            )
        if max_connections < 1:
            raise ServeError(
                f"the connection limit must be at least 1, not {max_connections}",
                f"use --max-connections {DEFAULT_MAX_CONNECTIONS}",
            )
        self.root = root
        self.layout = Layout(root)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self._on_warning = on_warning
        self._warned: set[str] = set()
        self.host = host
        self.port = port
        self.content_port = content_port
        self.page_size = page_size
        self.access_log = access_log
        self.real = real  # None: a kind mirror; a RealHub: behave like huggingface.co
        self.keep_log = keep_log
        self.log: list[RequestRecord] = []
        self.url = ""
        self.content_url = ""
        self._netloc = ""
        self._root_real = os.path.realpath(root)
        self._counters = FaultCounters()
        self._faults = faults or Faults()
        self._repos: dict[str, RepoIndex] = {}
        self._hashes = HashCache(Path(hash_cache) if hash_cache else None)
        self._repos_lock = threading.Lock()
        self._servers: list[OriginServer] = []
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ faults and log

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        """A new fault setting starts its "first N" counts from zero."""
        self._faults = value
        self._counters.reset()

    def reset_faults(self) -> None:
        """Restart the "first N" counts of the current faults."""
        self._counters.reset()

    def clear_log(self) -> None:
        self.log.clear()

    def expire_links(self) -> None:
        """Real-Hub mode: every content link handed out so far is refused from now on."""
        if self.real is not None:
            self.real.expire_links()

    # ------------------------------------------------------------------ repos

    def repo_ids(self) -> list[str]:
        """Every repo id this folder serves (see :mod:`.mirror` for an m3leo store)."""
        found = [f"{o}/{n}" for o, n in self.layout.candidates() if self._repo(o, n) is not None]
        return sorted(found)

    def _repo(self, org: str, name: str) -> RepoIndex | None:
        repo_id = f"{org}/{name}"
        index = self._repos.get(repo_id)
        if index is not None:
            return index
        sources = self.layout.sources(org, name)
        if sources is None:
            return None
        real = os.path.realpath(sources[0].folder)
        if not real.startswith(self._root_real.rstrip(os.sep) + os.sep):
            return None
        with self._repos_lock:
            return self._repos.setdefault(
                repo_id, RepoIndex(repo_id, sources, self._root_real, self._hashes, self._warn)
            )

    def _missing(self, org: str, name: str) -> str:
        """What a 404 says of a repo this mirror does not have."""
        return self.layout.missing(org, name)

    def _warn(self, message: str) -> None:
        """A warning about the served folder, once per message (on stderr unless redirected)."""
        with self._repos_lock:
            if message in self._warned:
                return
            self._warned.add(message)
        if self._on_warning is not None:
            self._on_warning(message)
        else:
            sys.stderr.write(f"m3leo serve: warning: {message}\n")

    def notes(self, served: list[str]) -> tuple[dict[str, list[str]], list[str], list[str]]:
        """For the start-up lines: edition -> regions served, what is not served and why, and
        warnings about the folder given (served one level too deep, nothing to serve)."""
        layout = self.layout
        return layout.editions(served), layout.not_served(), layout.warnings(served)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no connection is open on either origin (tests; False on timeout)."""
        return all(s.pool.wait_idle(timeout) for s in self._servers)

    def rescan(self, repo_id: str | None = None) -> None:
        """Re-read the folders now (normally done on ``revision``/``tree`` calls at ``main``)."""
        for rid in [repo_id] if repo_id else self.repo_ids():
            org, _, name = rid.partition("/")
            index = self._repo(org, name)
            if index is not None:
                index.rescan()

    def index_all(self) -> dict[str, int]:
        """Index (hash) every repo up front; returns repo id -> number of files."""
        out = {}
        for rid in self.repo_ids():
            org, _, name = rid.partition("/")
            index = self._repo(org, name)
            if index is not None:
                out[rid] = len(index.rescan().files)
        return out

    def commit(self, repo_id: str) -> str:
        """The commit ``main`` resolves to right now (rescans first)."""
        org, _, name = repo_id.partition("/")
        index = self._repo(org, name)
        if index is None:
            raise KeyError(repo_id)
        return index.rescan().commit

    # ------------------------------------------------------------------ lifecycle

    def _bind(self, port: int, handler: type, what: str) -> OriginServer:
        try:
            server = OriginServer((self.host, port), handler, self.max_connections)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(
                    f"port {port} on {self.host} is already in use ({what})",
                    "choose another --port (or --port 0 for a free one), or stop the other server",
                ) from None
            raise ServeError(
                f"cannot listen on {self.host}:{port}: {exc.strerror or exc}",
                "use --host 127.0.0.1 (this machine) or 0.0.0.0 (every interface)",
            ) from None
        server.hub = self
        server.origin = handler.origin  # type: ignore[attr-defined]
        return server

    def start(self) -> HubServer:
        hub = self._bind(self.port, HubHandler, "hub port")
        try:
            content = self._bind(self.content_port, ContentHandler, "content port")
        except ServeError:
            hub.server_close()
            raise
        self._servers = [hub, content]
        self.port = hub.server_address[1]
        self.content_port = content.server_address[1]
        shown = self.host if self.host not in ("0.0.0.0", "", "::") else socket.gethostname()
        self._netloc = f"{shown}:{self.port}"
        self.url = f"http://{shown}:{self.port}"
        self.content_url = f"http://{shown}:{self.content_port}"
        for server in self._servers:
            t = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        stoppers = [threading.Thread(target=s.shutdown) for s in self._servers]
        for t in stoppers:  # both origins at once: each waits up to one poll interval
            t.start()
        for t in stoppers:
            t.join()
        for server in self._servers:
            server.server_close()  # and its open connections, idle keep-alive ones included
        for t in self._threads:
            t.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run_server(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    content_port: int = 0,
    page_size: int = 1000,
    latency_ms: float = 0.0,
    access_log: bool = False,
    hash_cache: Path | None = None,
    real: RealHub | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    on_ready: Callable[[HubServer, dict[str, int]], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Index ``root``, serve it until Ctrl-C / SIGTERM (or ``stop`` is set), then shut down."""
    import signal

    server = HubServer(
        root,
        host=host,
        port=port,
        content_port=content_port,
        page_size=page_size,
        faults=Faults(latency_ms=latency_ms),
        access_log=access_log,
        keep_log=False,
        hash_cache=hash_cache,
        real=real,
        max_connections=max_connections,
        on_warning=on_warning,
    )
    server.start()
    stop = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM ends the run as Ctrl-C does: by an exception in the main thread. Setting the
        # event from the handler deadlocks when the signal lands inside stop.wait(), which
        # holds the event's lock (seen: 1 run in 6 hung on SIGTERM)
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        counts = server.index_all()
        if on_ready is not None:
            on_ready(server, counts)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
