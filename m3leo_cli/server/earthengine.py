"""A loopback Earth Engine REST server for ``m3leo gee``'s tests: ``image:computePixels`` and
an OAuth token endpoint.

It answers what the client sends: checks the bearer token, the project path, the expression
(a well-formed value table whose functions are all known Earth Engine algorithms) and the pixel
grid, then returns a GeoTIFF of the asked size and bands whose pixels are a known function of
the chip and band (``expected_pixels``), so a test can check every written value. The answer's
dtype is the expression's outermost cast (``Image.toUint8`` ...; float32 without one).

Faults the real service has are on switches:

- ``quota_errors``: the next N requests get 429 RESOURCE_EXHAUSTED;
- ``max_request_bytes``: the request-size limit (400 "Total request size ...");
- ``delay``: seconds every answer takes (slow composites);
- ``refused_chips``: chips (``chip_key(west, north)``) that always get a 400;
- ``masked``: the first pixel row is masked: it carries the expression's ``Image.unmask``
  value, or 0 (Earth Engine's fill) when the expression does not unmask;
- tokens: besides the fixed ``token``, ``POST /token`` issues tokens that expire after
  ``token_lifetime`` seconds, for the refresh-token grant (``refresh_token``) and for a
  service account's signed JWT-bearer grant (verified with google-auth against
  ``service_account_key``'s public key, and refused without the Earth Engine scope);
  ``revoke_next``: the next N requests with a good token get 401 and the token is revoked.

with EarthEngineServer(token="t") as ee:
    ee.quota_errors = 3          # the next three requests get 429
    ee.max_request_bytes = 40_000
    settings = load_settings({"ee_endpoint": ee.url, "ee_token": "t", "ee_project": "p"})
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

# Algorithms m3leo's recipes use (names as Earth Engine's algorithm list spells them).
KNOWN_ALGORITHMS = frozenset(
    {
        "ImageCollection.load", "Image.load", "Collection.filter", "Collection.map",
        "Collection.first", "DateRange", "Filter.dateRangeContains", "Filter.listContains",
        "Filter.equals", "Filter.lessThan", "Filter.greaterThan", "reduce.median",
        "reduce.mean", "reduce.min", "reduce.max", "ImageCollection.mosaic", "Image.select",
        "Image.addBands", "Image.visualize", "Image.rename", "Image.bitwiseAnd", "Image.eq",
        "Image.and", "Image.updateMask", "Image.divide", "Image.constant", "Image.unmask",
        "Image.lt", "Filter.notEquals", "Filter.lessThanOrEquals",
        "Filter.greaterThanOrEquals", "Filter.stringContains", "Filter.stringStartsWith",
        "Filter.stringEndsWith", *(
            f"Image.to{t}" for t in ("Uint8", "Int8", "Uint16", "Int16", "Uint32", "Int32",
                                     "Float", "Double")
        ),
    }
)  # fmt: skip
CASTS = {
    "Image.toUint8": "uint8", "Image.toInt8": "int8", "Image.toUint16": "uint16",
    "Image.toInt16": "int16", "Image.toUint32": "uint32", "Image.toInt32": "int32",
    "Image.toFloat": "float32", "Image.toDouble": "float64",
}  # fmt: skip
EE_SCOPE = "https://www.googleapis.com/auth/earthengine"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/image:computePixels$")
BYTES_PER_PIXEL = 4  # the size limit counts 4 bytes a pixel, whatever the dtype


def chip_key(west: float, north: float) -> str:
    """How ``refused_chips`` names a chip: its west and north edges, rounded."""
    return f"{west:.7f},{north:.7f}"


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
        if re.search(r"_v[vh](asc|des)$", name):
            out[i] = -out[i] / 8  # S1 bands: negative dB with fractions (-15.7 and the like)
    return out


def _result_call(expr: dict[str, Any]) -> dict[str, Any]:
    value = expr["values"][expr["result"]]
    return value.get("functionInvocationValue") or {}


def _outer(expr: dict[str, Any], names: set[str] | dict[str, str]) -> dict[str, Any] | None:
    """The first invocation of one of ``names`` going down the result's ``input`` chain."""
    call = _result_call(expr)
    while call:
        if call.get("functionName") in names:
            return call
        ref = (call.get("arguments", {}).get("input") or {}).get("valueReference")
        if ref is None:
            return None
        call = expr["values"][ref].get("functionInvocationValue") or {}
    return None


def _unmask_value(expr: dict[str, Any]) -> float:
    """The fill the expression unmasks with (0, Earth Engine's own fill, when it does not)."""
    call = _outer(expr, {"Image.unmask"})
    if call is None:
        return 0.0
    ref = call["arguments"]["value"]["valueReference"]
    const = expr["values"][ref]["functionInvocationValue"]["arguments"]["value"]
    return float(const["constantValue"])


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

    def _json(self, code: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, status: str, message: str) -> None:
        self._json(code, {"error": {"code": code, "message": message, "status": status}})

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/token":
            code, doc = owner.token_grant(raw)
            return self._json(code, doc)
        m = _PATH.match(self.path)
        if not m:
            return self._error(404, "NOT_FOUND", f"no such method {self.path}")
        if not owner.authorized(self.headers.get("Authorization") or ""):
            return self._error(401, "UNAUTHENTICATED", "Request had invalid credentials.")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "INVALID_ARGUMENT", "body is not JSON")
        with owner.lock:
            owner.requests.append({"project": m.group("project"),
                                   "user_project": self.headers.get("X-Goog-User-Project"),
                                   **body})  # fmt: skip
            if owner.quota_errors > 0:
                owner.quota_errors -= 1
                return self._error(429, "RESOURCE_EXHAUSTED", "Too many concurrent requests.")
        expr = body.get("expression")
        why = _check_expression(expr)
        grid, bands = body.get("grid") or {}, body.get("bandIds") or []
        if why is None and body.get("fileFormat") != "GEO_TIFF":
            why = "fileFormat must be GEO_TIFF"
        if why is None and (grid.get("crsCode") != "EPSG:4326" or not bands):
            why = "grid.crsCode EPSG:4326 and bandIds are required"
        if why:
            return self._error(400, "INVALID_ARGUMENT", why)
        t = grid["affineTransform"]
        if chip_key(t["translateX"], t["translateY"]) in owner.refused_chips:
            return self._error(
                400, "INVALID_ARGUMENT", "Image.select: Pattern 'B4' did not match any bands."
            )
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
            arr = expected_pixels(grid, bands)
            if owner.masked:
                arr[:, 0, :] = _unmask_value(expr)
            cast = _outer(expr, CASTS)
            data = _geotiff(arr, grid, CASTS[cast["functionName"]] if cast else "float32")
        finally:
            with owner.lock:
                owner.in_flight -= 1
        self.send_response(200)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting (a read timeout): nothing to answer


def _geotiff(arr: Any, grid: dict[str, Any], dtype: str) -> bytes:
    import numpy as np
    from affine import Affine
    from rasterio.io import MemoryFile

    t = grid["affineTransform"]
    transform = Affine(t["scaleX"], t["shearX"], t["translateX"], t["shearY"], t["scaleY"],
                       t["translateY"])  # fmt: skip
    if np.dtype(dtype).kind in "iu":  # Earth Engine's integer casts truncate and clamp
        info = np.iinfo(dtype)
        arr = np.clip(np.trunc(arr), info.min, info.max)
    count, h, w = arr.shape
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=w, height=h, count=count, dtype=dtype,
                      crs="EPSG:4326", transform=transform) as dst:  # fmt: skip
            dst.write(arr.astype(dtype))
        return bytes(mem.read())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: EarthEngineServer


class EarthEngineServer:
    """The loopback server; ``url`` is the base to give as ``ee_endpoint``, ``token_uri`` the
    token endpoint to give as ``ee_token_uri``."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.quota_errors = 0
        self.max_request_bytes = 0
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.delay = 0.0  # seconds each answer takes
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests answered at once
        self.refused_chips: set[str] = set()
        self.masked = False
        # OAuth: tokens issued by /token, valid for token_lifetime seconds
        self.token_lifetime = 3600.0
        self.refresh_token = "stored-refresh-token"
        self.service_account_key: str | None = None  # the PEM private key of a service account
        self.issued: dict[str, float] = {}  # token -> expiry (time.monotonic)
        self.grants: list[dict[str, Any]] = []  # every token request, decoded
        self.revoke_next = 0
        self.rejected_tokens = 0  # requests answered 401 for an expired or revoked token
        self._counter = itertools.count(1)
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def authorized(self, header: str) -> bool:
        token = header.removeprefix("Bearer ")
        if not header.startswith("Bearer "):
            return False
        if token == self.token:
            return True
        with self.lock:
            expiry = self.issued.get(token)
            if expiry is None or expiry < time.monotonic():
                self.rejected_tokens += 1
                return False
            if self.revoke_next > 0:
                self.revoke_next -= 1
                del self.issued[token]
                self.rejected_tokens += 1
                return False
        return True

    def token_grant(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        """An OAuth token answer for a refresh-token or JWT-bearer grant (RFC 6749 / 7523)."""
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        grant = form.get("grant_type", "")
        with self.lock:
            self.grants.append(form)
        if grant == "refresh_token":
            if form.get("refresh_token") != self.refresh_token:
                return 400, {"error": "invalid_grant", "error_description": "Bad refresh token"}
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            why = self._check_assertion(form.get("assertion", ""))
            if why:
                return 400, {"error": why[0], "error_description": why[1]}
        else:
            return 400, {"error": "unsupported_grant_type", "error_description": grant}
        token = f"issued-{next(self._counter)}"
        with self.lock:
            self.issued[token] = time.monotonic() + self.token_lifetime
        return 200, {
            "access_token": token,
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
        }

    def _check_assertion(self, assertion: str) -> tuple[str, str] | None:
        from cryptography.hazmat.primitives import serialization
        from google.auth import exceptions, jwt

        if self.service_account_key is None:
            return "invalid_client", "no service account is registered"
        key = serialization.load_pem_private_key(self.service_account_key.encode(), None)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            # google-auth addresses a service account's assertion to Google's token endpoint,
            # wherever the request goes
            claims = jwt.decode(assertion, certs=public.decode(), audience=GOOGLE_TOKEN_URI)
        except (exceptions.GoogleAuthError, ValueError) as exc:
            return "invalid_grant", f"Invalid JWT Signature ({exc})"
        if EE_SCOPE not in str(claims.get("scope", "")).split():
            return "invalid_scope", "Invalid OAuth scope or ID token audience provided."
        return None

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
