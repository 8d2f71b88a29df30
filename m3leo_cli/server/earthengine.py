"""A loopback Earth Engine REST server for ``m3leo gee``'s tests: ``image:computePixels``.

It answers what the client sends: checks the bearer token, the project path, the expression
(a well-formed value table whose functions are all known Earth Engine algorithms) and the pixel
grid, then returns a GeoTIFF of the asked size and bands whose pixels are a known function of
the chip and band (``expected_pixels``), so a test can check every written value. Faults the
real service has are on switches: quota answers (429 RESOURCE_EXHAUSTED) and the request-size
limit (400 "Total request size ... must be less than or equal to ... bytes").

with EarthEngineServer(token="t") as ee:
    ee.quota_errors = 3          # the next three requests get 429
    ee.max_request_bytes = 40_000
    settings = load_settings({"ee_endpoint": ee.url, "ee_token": "t", "ee_project": "p"})
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Algorithms m3leo's recipes use (names as Earth Engine's algorithm list spells them).
KNOWN_ALGORITHMS = frozenset(
    {
        "ImageCollection.load", "Image.load", "Collection.filter", "Collection.map",
        "Collection.first", "DateRange", "Filter.dateRangeContains", "Filter.listContains",
        "Filter.equals", "Filter.lessThan", "Filter.greaterThan", "reduce.median",
        "reduce.mean", "reduce.min", "reduce.max", "ImageCollection.mosaic", "Image.select",
        "Image.addBands", "Image.visualize", "Image.rename", "Image.bitwiseAnd", "Image.eq",
        "Image.and", "Image.updateMask", "Image.divide", "Image.constant",
    }
)  # fmt: skip
_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/image:computePixels$")
BYTES_PER_PIXEL = 4  # the server answers float32


def expected_pixels(grid: dict[str, Any], band_ids: list[str]) -> Any:
    """What the server puts in a chip: band k of the recipe is k+1 plus a west-east ramp, and
    the chip's translateX/Y (rounded) shift it, so chips and bands all differ."""
    import numpy as np

    w, h = grid["dimensions"]["width"], grid["dimensions"]["height"]
    t = grid["affineTransform"]
    shift = round(t["translateX"] * 100) % 97 + round(t["translateY"] * 100) % 89
    out = np.empty((len(band_ids), h, w), dtype=np.float32)
    for i, name in enumerate(band_ids):
        k = int(name.rsplit("#", 1)[-1]) if "#" in name else sum(map(ord, name)) % 50
        out[i] = k + 1 + shift + np.arange(w, dtype=np.float32)[None, :] / w
    return out


def _check_expression(expr: Any) -> str | None:
    """Why ``expr`` is not a well-formed Expression of known algorithms (None when it is)."""
    if not isinstance(expr, dict) or expr.get("result") not in (expr.get("values") or {}):
        return "expression must have values and a result key among them"
    for key, value in expr["values"].items():
        todo = [value]
        while todo:
            v = todo.pop()
            if not isinstance(v, dict) or len(v) != 1:
                return f"value {key} is malformed"
            ((kind, body),) = v.items()
            if kind == "functionInvocationValue":
                if body.get("functionName") not in KNOWN_ALGORITHMS:
                    return f"unknown algorithm {body.get('functionName')!r}"
                todo.extend(body.get("arguments", {}).values())
            elif kind == "arrayValue":
                todo.extend(body.get("values", []))
            elif kind == "valueReference":
                if body not in expr["values"]:
                    return f"dangling reference {body!r}"
            elif kind == "functionDefinitionValue":
                if body.get("body") not in expr["values"]:
                    return "function body is not a value"
            elif kind not in ("constantValue", "argumentReference"):
                return f"unknown value kind {kind!r}"
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _error(self, code: int, status: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message, "status": status}})
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        m = _PATH.match(self.path)
        if not m:
            return self._error(404, "NOT_FOUND", f"no such method {self.path}")
        if self.headers.get("Authorization") != f"Bearer {owner.token}":
            return self._error(401, "UNAUTHENTICATED", "Request had invalid credentials.")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "INVALID_ARGUMENT", "body is not JSON")
        with owner.lock:
            owner.requests.append({"project": m.group("project"), **body})
            if owner.quota_errors > 0:
                owner.quota_errors -= 1
                return self._error(429, "RESOURCE_EXHAUSTED", "Too many concurrent requests.")
        why = _check_expression(body.get("expression"))
        grid, bands = body.get("grid") or {}, body.get("bandIds") or []
        if why is None and body.get("fileFormat") != "GEO_TIFF":
            why = "fileFormat must be GEO_TIFF"
        if why is None and (grid.get("crsCode") != "EPSG:4326" or not bands):
            why = "grid.crsCode EPSG:4326 and bandIds are required"
        if why:
            return self._error(400, "INVALID_ARGUMENT", why)
        w, h = grid["dimensions"]["width"], grid["dimensions"]["height"]
        size = w * h * len(bands) * BYTES_PER_PIXEL
        if owner.max_request_bytes and size > owner.max_request_bytes:
            return self._error(
                400,
                "INVALID_ARGUMENT",
                f"Total request size ({size} bytes) must be less than or equal to "
                f"{owner.max_request_bytes} bytes.",
            )
        with owner.lock:
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        try:
            time.sleep(owner.delay)  # lets concurrent requests overlap visibly
            data = _geotiff(expected_pixels(grid, bands), grid)
        finally:
            with owner.lock:
                owner.in_flight -= 1
        self.send_response(200)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _geotiff(arr: Any, grid: dict[str, Any]) -> bytes:
    from affine import Affine
    from rasterio.io import MemoryFile

    t = grid["affineTransform"]
    transform = Affine(t["scaleX"], t["shearX"], t["translateX"], t["shearY"], t["scaleY"],
                       t["translateY"])  # fmt: skip
    count, h, w = arr.shape
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=w, height=h, count=count, dtype="float32",
                      crs="EPSG:4326", transform=transform) as dst:  # fmt: skip
            dst.write(arr)
        return bytes(mem.read())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: EarthEngineServer


class EarthEngineServer:
    """The loopback server; ``url`` is the base to give as ``ee_endpoint``."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.quota_errors = 0
        self.max_request_bytes = 0
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.delay = 0.0  # seconds each answer takes
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests answered at once
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> EarthEngineServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
