"""Pure pieces of the Hub wire protocol: URL parsing, JSON documents, cursors, byte ranges."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode

from .index import FileEntry, Snapshot

EXPAND_PAGE_SIZE = 50  # the Hub's page size when expand=true
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Route:
    kind: str  # info | revision | tree | paths-info | resolve | lfs-batch | lfs | unknown-type
    org: str
    name: str
    rev: str = "main"
    path: str = ""
    digest: str = ""  # content origin: the sha256 in the URL

    @property
    def repo_id(self) -> str:
        return f"{self.org}/{self.name}"


def parse_hub_path(raw: str) -> Route | None:
    """Route a raw (still percent-encoded) URL path of the Hub origin; None if it is no route."""
    parts = raw.split("/")
    if len(parts) >= 5 and parts[1] == "api" and parts[2] in ("models", "spaces", "datasets"):
        if parts[2] != "datasets":
            return Route("unknown-type", unquote(parts[3]), unquote(parts[4]))
        org, name = unquote(parts[3]), unquote(parts[4])
        if len(parts) == 5:
            return Route("info", org, name)
        if len(parts) >= 7 and parts[5] == "revision":
            return Route("revision", org, name, rev=unquote("/".join(parts[6:])))
        if len(parts) >= 7 and parts[5] == "tree":
            sub = unquote("/".join(parts[7:])).strip("/")
            return Route("tree", org, name, rev=unquote(parts[6]), path=sub)
        if len(parts) == 7 and parts[5] == "paths-info":
            return Route("paths-info", org, name, rev=unquote(parts[6]))
        return None
    if parts[5:] == ["lfs", "objects", "batch"] and parts[1] == "datasets" and parts[4] == "info":
        if parts[3].endswith(".git"):  # /datasets/<org>/<name>.git/info/lfs/objects/batch
            return Route("lfs-batch", unquote(parts[2]), unquote(parts[3][:-4]))
    if len(parts) >= 7 and parts[1] == "datasets" and parts[4] == "resolve":
        path = unquote("/".join(parts[6:]))
        return Route(
            "resolve", unquote(parts[2]), unquote(parts[3]), rev=unquote(parts[5]), path=path
        )
    return None


def parse_content_path(raw: str) -> Route | None:
    """``/lfs/<org>/<name>/<sha256>/<path>`` on the content origin."""
    parts = raw.split("/")
    if len(parts) >= 6 and parts[1] == "lfs":
        return Route(
            "lfs",
            unquote(parts[2]),
            unquote(parts[3]),
            path=unquote("/".join(parts[5:])),
            digest=parts[4],
        )
    return None


LFS_MEDIA = "application/vnd.git-lfs+json"
LFS_MISSING = {"code": 404, "message": "Object does not exist"}


def lfs_error(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


def lfs_content_path(org: str, name: str, sha256: str, path: str) -> str:
    """The content origin's path for an LFS file (what a resolve and a batch link point at)."""
    return f"/lfs/{quote(org, safe='')}/{quote(name, safe='')}/{sha256}/{quote(path)}"


def lfs_object(snap: Snapshot, sha256: str) -> FileEntry | None:
    """The first file (by path) whose content has this sha256 (LFS objects are by content)."""
    by_sha = snap.memo.get("by_sha256")
    if by_sha is None:
        by_sha = {}
        for p in reversed(snap.ordered):
            f = snap.files.get(p)
            if f is not None and f.sha256 is not None:
                by_sha[f.sha256] = f
        snap.memo["by_sha256"] = by_sha
    return by_sha.get(sha256)  # type: ignore[no-any-return]


def safe_repo_path(path: str) -> bool:
    """A relative, normalised, slash-separated path: nothing that could climb out of a repo."""
    if not path or "\x00" in path or "\\" in path or path.startswith(("/", "~")):
        return False
    return all(seg not in ("", ".", "..") for seg in path.split("/"))


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def query_flag(query: str, name: str) -> bool:
    value = query_value(query, name)
    return value is not None and value.lower() in ("1", "true", "yes")


def repo_info_json(snap: Snapshot, blobs: bool) -> dict[str, object]:
    """The ``/revision/<rev>`` document (``id`` and ``sha`` are the ones clients require)."""
    org = snap.repo_id.split("/", 1)[0]
    siblings: list[dict[str, object]] = []
    for path in sorted(snap.files):
        f = snap.files[path]
        sib: dict[str, object] = {"rfilename": path}
        if blobs:
            sib["size"] = f.size
            sib["blobId"] = f.oid
            if f.sha256 is not None:
                sib["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        siblings.append(sib)
    when = iso(snap.last_modified_ns)
    return {
        "_id": snap.commit[:24],
        "id": snap.repo_id,
        "author": org,
        "sha": snap.commit,
        "lastModified": when,
        "createdAt": when,
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(f.size for f in snap.files.values()),
    }


def expand_fields(snap: Snapshot) -> dict[str, object]:
    """What ``expand=true`` adds to every entry: the (one) commit that wrote it."""
    return {
        "lastCommit": {
            "id": snap.commit,
            "title": "Snapshot served by m3leo",
            "date": iso(snap.last_modified_ns),
        }
    }


def security_fields() -> dict[str, object]:
    return {"securityFileStatus": {"status": "safe", "avScan": None, "pickleImportScan": None}}


def encode_cursor(offset: int, commit: str) -> str:
    return base64.urlsafe_b64encode(f"{offset}:{commit[:12]}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """The offset a cursor stands for, or None if it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        offset = int(text.split(":", 1)[0])
    except (ValueError, UnicodeDecodeError):
        return None
    return offset if offset >= 0 else None


def next_link(host: str, raw_path: str, query: str, cursor: str) -> str:
    """Absolute URL of the next page: the same query with ``cursor`` replaced."""
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "cursor"]
    params.append(("cursor", cursor))
    return f"http://{host}{raw_path}?{urlencode(params)}"


def clean_host(header: str | None, fallback: str) -> str:
    """The Host the client used (so links work under any name), if it looks like a host."""
    if header and _HOST_RE.match(header.strip()):
        return header.strip()
    return fallback


def parse_paths_info(body: bytes, content_type: str) -> tuple[list[str], bool]:
    """``paths`` (repeated form fields, a JSON list in one field, or a JSON body) and ``expand``."""
    paths: list[str] = []
    expand = False
    text = body.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            doc = json.loads(text or "{}")
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
            return [], False
        raw = doc.get("paths", []) if isinstance(doc, dict) else []
        paths = [p for p in raw if isinstance(p, str)] if isinstance(raw, list) else []
        expand = bool(doc.get("expand")) if isinstance(doc, dict) else False
        return paths, expand
    form = parse_qs(text, keep_blank_values=True)
    for value in form.get("paths", []):
        if value.startswith("["):
            try:
                items = json.loads(value)
            except (ValueError, RecursionError):
                items = []
            paths.extend(p for p in items if isinstance(p, str))
        else:
            paths.append(value)
    expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
    return paths, expand


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` inclusive, ``"unsatisfiable"``, or None to answer with the whole file.

    Only single ranges are honoured (``bytes=N-``, ``bytes=N-M``, ``bytes=-S``); anything else
    is ignored as RFC 9110 allows.
    """
    if not header:
        return None
    m = _RANGE_RE.match(header.strip().replace(" ", ""))
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix: the last S bytes
        suffix = int(m.group(2))
        if suffix == 0:
            return "unsatisfiable"
        return (max(0, size - suffix), size - 1) if size else "unsatisfiable"
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if m.group(2) and end < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def etag_matches(validator: str, etag: str) -> bool:
    v = validator.strip()
    if v.startswith("W/"):
        return False  # If-Range needs a strong validator
    return v.strip('"') == etag


def query_value(query: str, name: str) -> str | None:
    values = parse_qs(query, keep_blank_values=True).get(name)
    return values[-1] if values else None
