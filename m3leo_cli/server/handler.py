"""The two origins of ``m3leo serve``: the Hub's API (tree, paths-info, resolve) and the content
host that serves bytes (with Range) behind the resolve redirect.

One handler class per origin on stdlib ``http.server`` (HTTP/1.1 keep-alive). Bodies go out
with ``socket.sendfile``; only a fault that has to touch the bytes reads them into Python.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

from . import protocol as P
from .base import BaseHandler
from .faults import Faults
from .index import RepoIndex, Snapshot


class HubHandler(BaseHandler):
    """The Hub origin: ``/api/datasets/...`` and ``/datasets/<repo>/resolve/...``."""

    origin = "hub"

    def _route(self, method: str, raw: str, query: str, faults: Faults) -> None:
        route = P.parse_hub_path(raw)
        if route is None:
            self._error(404, None, "Not found")
            return
        bucket = "resolvers" if route.kind in ("resolve", "lfs-batch") else "api"
        real = self.hub.real
        if real is not None:
            self._more_headers = real.count(bucket, self._token())
        self._common_faults(raw, faults, bucket)
        if route.kind == "unknown-type":
            self._error(404, "RepoNotFound", "m3leo serve only serves dataset repos")
        methods = {"paths-info": ("POST",), "lfs-batch": ("POST",), "resolve": ("GET", "HEAD")}
        allowed = methods.get(route.kind, ("GET",))
        if method not in allowed:
            self._error(405, None, f"{method} is not allowed here", {"Allow": ", ".join(allowed)})
        if real is not None:
            self._real_hub_gate(route, raw, query)
        index = self.hub._repo(route.org, route.name)
        if index is None:  # the Hub's RepoNotFound, saying it is this mirror that lacks it
            self._error(404, "RepoNotFound", self.hub._missing(route.org, route.name))
            return
        self.hub_repo = route.repo_id
        if route.kind == "resolve":
            self._resolve(index, route, faults)
        if route.kind == "lfs-batch":
            if faults.no_lfs_batch:
                self._reply(404, b"Not found", "text/plain")
            if self.hub._counters.take("busy", "lfs-batch", faults.lfs_batch_busy):
                wait = {"Retry-After": str(faults.retry_after)}
                self._error(429, None, "You have been rate-limited; retry later.", wait)
            self._lfs_batch(index, route, self._read_body())
        fresh = route.rev in ("main", "refs/heads/main") and "cursor=" not in query
        snap = index.rescan() if fresh else index.snapshot()
        if route.rev not in ("main", "refs/heads/main", snap.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {route.rev}")
        if route.kind in ("info", "revision"):
            blobs = P.query_flag(query, "blobs")
            doc = snap.memo.get(("info", blobs))
            if doc is None:
                doc = json.dumps(P.repo_info_json(snap, blobs), separators=(",", ":")).encode()
                snap.memo[("info", blobs)] = doc
            self._json_bytes(doc)
        elif route.kind == "tree":
            self._tree(snap, route, raw, query, faults)
        else:
            self._paths_info(snap, self._read_body(), faults)

    def _real_hub_gate(self, route: Any, raw: str, query: str) -> None:
        """Renamed repos answer 307; gated/private ones and bad tokens the Hub's errors."""
        real = self.hub.real
        assert real is not None
        new = real.renames.get(route.repo_id)
        if new:
            parts = raw.split("/")
            at = 3 if parts[1] == "api" else 2
            parts[at : at + 2] = [quote(p, safe="") for p in new.split("/", 1)]
            if route.kind == "lfs-batch":
                parts[at + 1] += ".git"
            where = "/".join(parts) + (f"?{query}" if query else "")
            self._reply(307, b"", "text/plain", {"Location": where})
        denied = real.access(route.repo_id, self._token())
        if denied is not None:
            self._error(*denied)

    def _tree(self, snap: Snapshot, route: Any, raw: str, query: str, faults: Faults) -> None:
        if not snap.is_dir(route.path):
            msg = f"{route.path} does not exist on {route.rev}"
            self._error(404, "EntryNotFound", msg, {"X-Repo-Commit": snap.commit})
        expand = P.query_flag(query, "expand")
        paths = snap.listing(route.path, P.query_flag(query, "recursive"))
        items: list[str | dict[str, object]] = [*paths]
        for hostile in faults.hostile_paths:
            items.append({"type": "file", "oid": "0" * 40, "size": 1, "path": hostile})
        cursor = P.query_value(query, "cursor")
        offset = 0
        if cursor is not None:
            decoded = P.decode_cursor(cursor)
            if decoded is None:
                self._error(400, None, "Invalid cursor")
            offset = decoded or 0
        size = self.hub.page_size
        if expand:
            size = min(size, P.EXPAND_PAGE_SIZE)
        page = items[offset : offset + size]
        extra = P.expand_fields(snap) if expand else {}
        docs = []
        for item in page:
            doc = snap.entry_json(item) if isinstance(item, str) else dict(item)
            if expand:
                doc.update(extra)
                if doc["type"] == "file":
                    doc.update(P.security_fields())
            docs.append(doc)
        headers = {}
        if offset + size < len(items):
            host = P.clean_host(self.headers.get("Host"), self.hub._netloc)
            link = P.next_link(host, raw, query, P.encode_cursor(offset + size, snap.commit))
            headers["Link"] = f'<{link}>; rel="next"'
        self._json(docs, headers)

    def _paths_info(self, snap: Snapshot, body: bytes, faults: Faults) -> None:
        paths, expand = P.parse_paths_info(body, self.headers.get("Content-Type", ""))
        docs, seen = [], set()
        extra = P.expand_fields(snap) if expand else {}
        for p in paths:
            p = p.strip("/")
            if p in seen or p == "" or not (p in snap.files or p in snap.dirs):
                continue
            seen.add(p)
            doc = snap.entry_json(p)
            doc.update(extra)
            docs.append(doc)
        self._json(docs)

    def _lfs_batch(self, index: RepoIndex, route: Any, body: bytes) -> None:
        """The Git LFS batch API (downloads only): a signed content link per object asked for."""
        try:
            doc = json.loads(body)
            objects = [(str(o["oid"]), int(o["size"])) for o in doc["objects"]]
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
            self._reply(422, P.lfs_error("Validation error: not a batch request"), P.LFS_MEDIA)
        if doc.get("operation") != "download":
            self._reply(403, P.lfs_error("m3leo serve is read-only"), P.LFS_MEDIA)
        snap = index.snapshot()
        answers = []
        for oid, size in objects:
            entry = P.lfs_object(snap, oid)
            if entry is None or entry.size != size:
                answers.append({"oid": oid, "size": size, "error": P.LFS_MISSING})
                continue
            action: dict[str, object] = {"href": self._content_link(route, oid, entry.path)}
            if self.hub.real is not None:
                action["expires_in"] = int(self.hub.real.link_ttl)
            answers.append({"oid": oid, "size": size, "authenticated": True,
                            "actions": {"download": action}})  # fmt: skip
        doc = {"transfer": "basic", "objects": answers, "hash_algo": "sha256"}
        self._reply(200, json.dumps(doc, separators=(",", ":")).encode(), P.LFS_MEDIA)

    def _content_link(self, route: Any, sha256: str, path: str) -> str:
        """Where an LFS file's bytes are, on the host the client used: what a resolve redirects
        to and a batch answers (signed, expiring, in real-Hub mode like the Hub's CDN links)."""
        host = P.clean_host(self.headers.get("Host"), self.hub._netloc).rsplit(":", 1)[0]
        lfs = P.lfs_content_path(route.org, route.name, sha256, path)
        link = f"http://{host}:{self.hub.content_port}{lfs}"
        if self.hub.real is not None:
            link += "?" + self.hub.real.sign(unquote(lfs))
        return link

    def _resolve(self, index: RepoIndex, route: Any, faults: Faults) -> None:
        path = route.path
        if not P.safe_repo_path(path):
            self._error(400, None, f"Invalid path {path!r}")
        self._record.repo_path = path
        snap, entry = self._lookup(index, path)
        if route.rev not in ("main", "refs/heads/main", snap.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {route.rev}")
        commit = {"X-Repo-Commit": snap.commit}
        self._path_status(route.repo_id, path, faults, commit)
        if entry is None:
            self._error(404, "EntryNotFound", f"{path} does not exist on {route.rev}", commit)
            return
        if entry.sha256 is None:
            self._send_file(entry, faults, commit)
        self._reply(
            302,
            headers={
                **commit,
                "Location": self._content_link(route, entry.sha256 or "", path),
                "ETag": f'"{entry.sha256}"',
                "X-Linked-Etag": f'"{entry.sha256}"',
                "X-Linked-Size": str(entry.size),
                "Accept-Ranges": "bytes",
            },
            ctype="text/plain; charset=utf-8",
        )


class ContentHandler(BaseHandler):
    """The content origin (like the Hub's CDN): LFS bytes only, no Hub headers."""

    origin = "content"
    allow = "GET, HEAD"

    def _route(self, method: str, raw: str, query: str, faults: Faults) -> None:
        route = P.parse_content_path(raw)
        if route is None:
            self._reply(404, b"Not found", "text/plain")
            return
        self._common_faults(raw, faults, "resolvers")
        if method not in ("GET", "HEAD"):
            self._reply(405, b"Method not allowed", "text/plain", {"Allow": "GET, HEAD"})
        index = self.hub._repo(route.org, route.name)
        if index is None or not P.safe_repo_path(route.path):
            self._reply(404, b"Not found", "text/plain")
            return
        self._record.repo_path = route.path
        self.hub_repo = route.repo_id
        self._path_status(route.repo_id, route.path, faults, {})
        real = self.hub.real
        if real is not None:
            why = real.check_link(unquote(raw), query)
            if why is not None:  # what CloudFront answers to an expired or forged link
                doc = f"<Error><Code>AccessDenied</Code><Message>{why}</Message></Error>"
                status = real.expired_status if "expired" in why else 403
                self._reply(status, doc.encode(), "application/xml")
        _, entry = self._lookup(index, route.path)
        if entry is None or entry.sha256 != route.digest:
            self._reply(404, b"Not found", "text/plain")
            return
        if real is not None:
            cdn_etag = real.content_etag(entry.sha256)
            self._send_file(entry, faults, {}, cdn_etag, real.last_modified(entry.mtime_ns))
        self._send_file(entry, faults, {})
