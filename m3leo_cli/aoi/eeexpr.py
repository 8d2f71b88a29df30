"""Earth Engine computations as REST expressions, and the recipes that reproduce M3LEO layers.

The Earth Engine REST API takes a computation as an ``Expression``: a table of values (function
invocations, constants, function definitions) and the key of the result. This module builds
those graphs directly, so ``m3leo gee`` needs no Earth Engine client library to describe what
it asks for. The recipes follow the geetiles definitions M3LEO's layers were made with (S1 GRD
seasonal medians, the S2 RGB monthly median, ESA WorldCover); a TOML recipe file describes a
layer of your own (a collection, a date range, property filters, bands and a reducer).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import spec
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

    A filter is ``(property, op, value)`` with op ``equals``, ``listContains`` or ``lessThan``.
    """
    coll = Call("ImageCollection.load", id=asset)
    date = Call(
        "Filter.dateRangeContains",
        leftValue=Call("DateRange", start=start, end=end),
        rightField="system:time_start",
    )
    coll = Call("Collection.filter", collection=coll, filter=date)
    for prop, op, value in filters:
        f = Call(f"Filter.{op}", leftField=prop, rightValue=value)
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


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """What to compute for each chip, and how the chip files are to be written."""

    datakind: str
    image: Any  # the graph
    bands: tuple[str, ...]  # band names in the written file, in order
    dtype: str
    label: bool = False
    published: bool = False  # a recipe for an M3LEO datakind (its name is the published one)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


REDUCERS = ("median", "mean", "min", "max", "first", "mosaic")
_SEASONS = ("winter", "spring", "summer", "fall")


def s1grd(year: int) -> Recipe:
    """Seasonal S1 GRD medians, 16 bands named as M3LEO's ``s1grd-YYYY`` (dB, float32)."""
    seasons = {
        "winter": (f"{year - 1}-12-01", f"{year}-02-28"),
        "spring": (f"{year}-03-01", f"{year}-05-31"),
        "summer": (f"{year}-06-01", f"{year}-08-31"),
        "fall": (f"{year}-09-01", f"{year}-11-30"),
    }
    parts = []
    for season in _SEASONS:
        start, end = seasons[season]
        for pol in ("VV", "VH"):
            for orbit, passname in (("asc", "ASCENDING"), ("des", "DESCENDING")):
                coll = collection(
                    "COPERNICUS/S1_GRD",
                    start,
                    end,
                    [
                        ("transmitterReceiverPolarisation", "listContains", pol),
                        ("orbitProperties_pass", "equals", passname),
                    ],
                )
                med = reduce(map_images(coll, select(Arg("image"), [pol])), "median")
                parts.append(select(med, [pol], [f"{season}_{pol.lower()}{orbit}"]))
    assert tuple(f"{p.args['newNames'][0]}" for p in parts) == spec.S1GRD_BANDS
    return Recipe(
        f"s1grd-{year}", stack(parts), spec.S1GRD_BANDS, "float32", published=True,
        description="Sentinel-1 GRD seasonal medians (dB), geetiles' s1grd definition",
    )  # fmt: skip


def s2rgbm(year: int) -> Recipe:
    """Monthly cloud-masked S2 RGB medians, visualised 0-0.3 to uint8, 36 bands ``MM_colour``."""
    months = []
    for m in range(1, 13):
        last = (31, 29 if year % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[m - 1]
        start, end = f"{year}-{m:02d}-01", f"{year}-{m:02d}-{last:02d}"
        coll = collection(
            "COPERNICUS/S2_SR_HARMONIZED", start, end, [("CLOUDY_PIXEL_PERCENTAGE", "lessThan", 20)]
        )
        img = Arg("image")
        qa = select(img, ["QA60"])
        clear = Call(
            "Image.and",
            image1=Call("Image.eq", image1=Call("Image.bitwiseAnd", image1=qa,
                        image2=Call("Image.constant", value=1 << 10)),
                        image2=Call("Image.constant", value=0)),
            image2=Call("Image.eq", image1=Call("Image.bitwiseAnd", image1=qa,
                        image2=Call("Image.constant", value=1 << 11)),
                        image2=Call("Image.constant", value=0)),
        )  # fmt: skip
        masked = Call(
            "Image.divide",
            image1=Call("Image.updateMask", image=img, mask=clear),
            image2=Call("Image.constant", value=10000),
        )
        med = reduce(map_images(coll, masked), "median")
        rgb = Call("Image.visualize", image=select(med, ["B4", "B3", "B2"]), min=0, max=0.3)
        months.append(select(rgb, ["vis-red", "vis-green", "vis-blue"],
                             [f"{m:02d}_red", f"{m:02d}_green", f"{m:02d}_blue"]))  # fmt: skip
    return Recipe(
        f"s2rgbm-{year}", stack(months), spec.S2RGBM_BANDS, "uint8", published=True,
        description="Sentinel-2 monthly cloud-masked RGB medians, geetiles' s2rgbm definition",
    )  # fmt: skip


def esaworldcover(year: int) -> Recipe:
    versions = {2020: "ESA/WorldCover/v100", 2021: "ESA/WorldCover/v200"}
    if year not in versions:
        raise EarthEngineError(
            f"ESA WorldCover has no {year} map", "use esaworldcover-2020 or esaworldcover-2021"
        )
    img = Call("Collection.first", collection=Call("ImageCollection.load", id=versions[year]))
    return Recipe(
        f"esaworldcover-{year}", select(img, ["Map"]), spec.ESAWC_BANDS, "uint8", label=True,
        published=True, description=f"ESA WorldCover {year} ({versions[year]})",
    )  # fmt: skip


BUILTINS = {"s1grd": s1grd, "s2rgbm": s2rgbm, "esaworldcover": esaworldcover}


def builtin_recipe(name: str) -> Recipe:
    """``s1grd-2020``, ``s2rgbm-2020``, ``esaworldcover-2020`` (any year the sources have)."""
    m = re.fullmatch(r"([a-z0-9]+)-(\d{4})", name)
    if not m or m.group(1) not in BUILTINS:
        raise EarthEngineError(
            f"no built-in recipe {name!r}",
            "use s1grd-YYYY, s2rgbm-YYYY, esaworldcover-YYYY or a recipe file (--recipe FILE.toml)",
        )
    return BUILTINS[m.group(1)](int(m.group(2)))


def load_recipe(path: Path) -> Recipe:
    """A layer of your own from a TOML file (format in docs/aoi.md)."""
    import tomli

    from .ingest import check_datakind_name

    try:
        doc = tomli.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomli.TOMLDecodeError) as exc:
        raise EarthEngineError(f"cannot read recipe {path}: {exc}", "see docs/aoi.md") from None
    try:
        datakind = check_datakind_name(str(doc["datakind"]))
        bands = [str(b) for b in doc["bands"]]
        names = [str(b) for b in doc.get("names", bands)]
        dtype = str(doc.get("dtype", "float32"))
        reducer = str(doc.get("reducer", "median"))
        if "image" in doc:
            img: Any = Call("Image.load", id=str(doc["image"]))
        else:
            filters = [(str(f["property"]), str(f.get("op", "equals")), f["value"])
                       for f in doc.get("filters", [])]  # fmt: skip
            coll = collection(str(doc["collection"]), str(doc["start"]), str(doc["end"]), filters)
            if reducer not in REDUCERS:
                raise ValueError(f"reducer must be one of {', '.join(REDUCERS)}")
            img = reduce(map_images(coll, select(Arg("image"), bands)), reducer)
    except (KeyError, TypeError, ValueError) as exc:
        raise EarthEngineError(
            f"recipe {path} is incomplete or wrong: {exc}",
            "a recipe needs datakind, bands and either image or collection+start+end (docs/aoi.md)",
        ) from None
    if len(names) != len(bands):
        raise EarthEngineError(f"recipe {path}: {len(names)} names for {len(bands)} bands")
    return Recipe(
        datakind, select(img, bands, names), tuple(names), dtype, label=bool(doc.get("label")),
        description=str(doc.get("description", f"your own layer from {Path(path).name}")),
    )  # fmt: skip
