"""Earth Engine computations as REST expressions, checked against the server's own names.

The Earth Engine REST API takes a computation as an ``Expression``: a table of values (function
invocations, constants, function definitions) and the key of the result. This module builds
those graphs directly, so ``m3leo gee`` needs no Earth Engine client library to describe what
it asks for, and checks every algorithm name against the names the server knows
(``SERVER_ALGORITHMS``) before any request: the ``ee`` client's own spellings (``Filter.lt``,
``eq``, ``gt`` ...) are not server names, and ``FILTER_OPS`` maps them. The recipes that use
these blocks live in ``recipes``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import EarthEngineError

# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Call:
    """One algorithm invocation, e.g. ``Call("Image.select", input=img, bandSelectors=[...])``."""

    name: str
    args: dict[str, Any]

    def __init__(self, name: str, **args: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", {k: v for k, v in args.items() if v is not None})


@dataclass(frozen=True)
class Arg:
    """A reference to an argument of the enclosing function definition."""

    name: str


@dataclass(frozen=True)
class Func:
    """A function of one or more arguments (what ``Collection.map`` applies)."""

    params: tuple[str, ...]
    body: Any


def encode(root: Any) -> dict[str, Any]:
    """The REST ``Expression`` of ``root``: shared sub-graphs become one value each."""
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}

    def ref(node: Any) -> str:
        value = enc(node)
        key = json.dumps(value, sort_keys=True)
        if key not in seen:
            seen[key] = str(len(values))
            values[seen[key]] = value
        return seen[key]

    def enc(node: Any) -> dict[str, Any]:
        if isinstance(node, Call):
            return {
                "functionInvocationValue": {
                    "functionName": node.name,
                    "arguments": {k: arg(v) for k, v in sorted(node.args.items())},
                }
            }
        if isinstance(node, Func):
            return {
                "functionDefinitionValue": {
                    "argumentNames": list(node.params),
                    "body": ref(node.body),
                }
            }
        raise TypeError(f"not a graph node: {node!r}")

    def arg(v: Any) -> dict[str, Any]:
        if isinstance(v, Arg):
            return {"argumentReference": v.name}
        if isinstance(v, Call | Func):
            return {"valueReference": ref(v)}
        if isinstance(v, list | tuple):
            if any(isinstance(x, Call | Func | Arg) for x in v):
                return {"arrayValue": {"values": [arg(x) for x in v]}}
            return {"constantValue": list(v)}
        return {"constantValue": v}

    result = ref(root)
    return {"result": result, "values": values}


# --------------------------------------------------------------------------- building blocks


def collection(asset: str, start: str, end: str, filters: list[tuple[str, str, Any]]) -> Call:
    """``ImageCollection(asset).filterDate(start, end)`` then property filters.

    A filter is ``(property, op, value)``: op a server name or an ``ee`` client alias
    (``FILTER_OPS``).
    """
    coll = Call("ImageCollection.load", id=asset)
    date = Call(
        "Filter.dateRangeContains",
        leftValue=Call("DateRange", start=start, end=end),
        rightField="system:time_start",
    )
    coll = Call("Collection.filter", collection=coll, filter=date)
    for prop, op, value in filters:
        f = Call(f"Filter.{filter_op(op)}", leftField=prop, rightValue=value)
        coll = Call("Collection.filter", collection=coll, filter=f)
    return coll


def map_images(coll: Call, body: Any) -> Call:
    """``coll.map(lambda image: body)`` with ``Arg("image")`` standing for each image."""
    return Call("Collection.map", collection=coll, baseAlgorithm=Func(("image",), body))


def select(image: Any, bands: list[str], names: list[str] | None = None) -> Call:
    return Call("Image.select", input=image, bandSelectors=list(bands), newNames=names)


def reduce(coll: Call, reducer: str) -> Call:
    """``coll.median()`` and friends: per-band reductions that keep band names."""
    if reducer == "first":
        return Call("Collection.first", collection=coll)
    if reducer == "mosaic":
        return Call("ImageCollection.mosaic", collection=coll)
    return Call(f"reduce.{reducer}", collection=coll)


def stack(images: list[Any]) -> Any:
    out = images[0]
    for img in images[1:]:
        out = Call("Image.addBands", dstImg=out, srcImg=img)
    return out


def unmask(image: Any, fill: float) -> Call:
    """``image.unmask(fill, sameFootprint=False)``: masked pixels (outside the footprint too)
    carry ``fill`` instead of Earth Engine's 0, so the client can tell them apart."""
    value = Call("Image.constant", value=fill)
    return Call("Image.unmask", input=image, value=value, sameFootprint=False)


def cast(image: Any, dtype: str) -> Call:
    """The server-side cast to ``dtype`` (every band one type, as the GeoTIFF encoder needs)."""
    if dtype not in CASTS:
        raise EarthEngineError(
            f"Earth Engine cannot write dtype {dtype!r}",
            "use one of " + ", ".join(CASTS) + " (dtype = ... in the recipe)",
        )
    return Call(CASTS[dtype], input=image)


# --------------------------------------------------------------------------- the server's names

# numpy dtype -> Earth Engine's cast algorithm
CASTS = {
    "uint8": "Image.toUint8",
    "int8": "Image.toInt8",
    "uint16": "Image.toUint16",
    "int16": "Image.toInt16",
    "uint32": "Image.toUint32",
    "int32": "Image.toInt32",
    "float32": "Image.toFloat",
    "float64": "Image.toDouble",
}

# Property-filter algorithms as the server names them (``Filter.<name>``), and the ``ee``
# client's spellings of the same filters (``ee.Filter.lt`` is ``Filter.lessThan`` on the wire).
SERVER_FILTERS = (
    "equals", "notEquals", "lessThan", "lessThanOrEquals", "greaterThan",
    "greaterThanOrEquals", "listContains", "stringContains", "stringStartsWith",
    "stringEndsWith",
)  # fmt: skip
FILTER_OPS = {
    **{name: name for name in SERVER_FILTERS},
    "eq": "equals", "neq": "notEquals", "lt": "lessThan", "lte": "lessThanOrEquals",
    "gt": "greaterThan", "gte": "greaterThanOrEquals", "contains": "stringContains",
    "starts_with": "stringStartsWith", "ends_with": "stringEndsWith",
    "less_than": "lessThan", "greater_than": "greaterThan",
}  # fmt: skip

# Every algorithm m3leo's graphs may name, spelled as Earth Engine's algorithm list spells it.
SERVER_ALGORITHMS = frozenset(
    {
        "ImageCollection.load", "Image.load", "Collection.filter", "Collection.map",
        "Collection.first", "DateRange", "Filter.dateRangeContains", "reduce.median",
        "reduce.mean", "reduce.min", "reduce.max", "ImageCollection.mosaic", "Image.select",
        "Image.addBands", "Image.visualize", "Image.rename", "Image.bitwiseAnd", "Image.eq",
        "Image.lt", "Image.and", "Image.updateMask", "Image.divide", "Image.constant",
        "Image.unmask", *CASTS.values(), *(f"Filter.{f}" for f in SERVER_FILTERS),
    }
)  # fmt: skip


def filter_op(op: str) -> str:
    """The server's name of a property filter (``lt`` -> ``lessThan``), or a refusal."""
    if op not in FILTER_OPS:
        raise EarthEngineError(
            f"unknown filter op {op!r}",
            "use one of " + ", ".join(SERVER_FILTERS) + " (or lt, lte, gt, gte, eq, neq)",
        )
    return FILTER_OPS[op]


def check_graph(root: Any) -> None:
    """Refuse a graph that names an algorithm the server does not have, before any request."""
    todo, seen = [root], set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Call):
            if node.name not in SERVER_ALGORITHMS:
                raise EarthEngineError(
                    f"Earth Engine has no algorithm {node.name!r}",
                    "name algorithms as the server's list spells them (docs/aoi.md)",
                )
            todo.extend(node.args.values())
        elif isinstance(node, Func):
            todo.append(node.body)
        elif isinstance(node, list | tuple):
            todo.extend(node)
