"""The recipes ``m3leo gee`` computes: the built-in ones that reproduce M3LEO layers, and yours.

A recipe is an Earth Engine graph (``eeexpr``) plus how its chips are written: band names, the
dtype Earth Engine sends (cast on the server, so every band has one type), the dtype and
encoding of the file, and the nodata value. Masked pixels never come back as Earth Engine's 0:
the request ``unmask``s them with a fill value first (``FLOAT_FILL`` for float requests, the
declared nodata for integer ones) and ``to_file`` turns that fill into NaN or the nodata.

The built-in recipes follow the geetiles definitions M3LEO's layers were made with; each
carries the geetiles commit it reproduces (``source``) and docs/aoi.md says what differs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import spec
from ..errors import EarthEngineError
from .eeexpr import Arg, Call, cast, check_graph, collection, map_images, reduce, select, stack
from .eeexpr import unmask as unmask_call

FLOAT_FILL = -3.0e38  # what a float request's masked pixels carry on the wire (then NaN)
S1_NODATA = 32768  # s1grd uint16 files: int16 -32768, a value no dB mean reaches
REDUCERS = ("median", "mean", "min", "max", "first", "mosaic")
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
_SEASONS = ("winter", "spring", "summer", "fall")
# QA60 carried no cloud polygons from 2022-01-25 to February 2024 (Earth Engine's catalog).
QA60_EMPTY_YEARS = (2022, 2023, 2024)


@dataclass(frozen=True)
class Recipe:
    """What to compute for each chip, and how the chip files are to be written."""

    datakind: str
    image: Any  # the graph, before unmask and cast
    bands: tuple[str, ...]  # band names in the written file, in order
    dtype: str  # the file's dtype
    wire_dtype: str = ""  # what Earth Engine sends (default: dtype)
    encoding: str = ""  # "" (as sent) or "int16-db" (truncated dB as uint16, s1grd's files)
    nodata: float | None = None  # integer files: the value of masked pixels (floats: NaN)
    label: bool = False
    published: bool = False  # a recipe for an M3LEO datakind (its name is the published one)
    high_volume: bool = False  # asks for the high-volume endpoint
    description: str = ""
    source: str = ""  # the geetiles definition a built-in recipe reproduces
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sent_dtype(self) -> str:
        return self.wire_dtype or self.dtype

    @property
    def fill(self) -> float:
        """The value masked pixels carry on the wire."""
        if self.sent_dtype.startswith("float"):
            return FLOAT_FILL
        assert self.nodata is not None
        return self.nodata

    def request_image(self) -> Call:
        """The graph sent: the image, masked pixels filled, cast to one dtype on the server."""
        return cast(unmask_call(self.image, self.fill), self.sent_dtype)

    def to_file(self, arr: Any) -> Any:
        """Earth Engine's array -> the file's array (fill -> NaN or nodata, encoding applied)."""
        import numpy as np

        masked = arr == np.asarray(self.fill, dtype=arr.dtype)
        if arr.dtype.kind == "f":
            masked |= np.isnan(arr)  # a NaN Earth Engine computed is no value either
        if self.encoding == "int16-db":
            # geetiles: astype("uint16") of float dB, i.e. truncated toward zero, then wrapped
            out = np.trunc(np.where(masked, 0, arr)).astype(np.int16).view(np.uint16)
            out[masked] = S1_NODATA
            return out
        if np.dtype(self.dtype).kind == "f":
            out = arr.astype(self.dtype)
            out[masked] = np.nan
            return out
        return arr.astype(self.dtype, copy=False)

    @property
    def file_nodata(self) -> float | None:
        return float("nan") if self.dtype.startswith("float") else self.nodata


def check_recipe(recipe: Recipe) -> None:
    """Everything a request would need, checked before the first one."""
    if recipe.dtype not in DTYPES or recipe.sent_dtype not in DTYPES:
        raise EarthEngineError(
            f"recipe {recipe.datakind}: unknown dtype {recipe.dtype!r}",
            "dtype = one of " + ", ".join(DTYPES),
        )
    if not recipe.dtype.startswith("float") and recipe.nodata is None:
        raise EarthEngineError(
            f"recipe {recipe.datakind}: an integer dtype ({recipe.dtype}) needs a nodata value",
            "add nodata = V to the recipe: the value masked pixels are written as",
        )
    if recipe.nodata is not None and not recipe.dtype.startswith("float"):
        import numpy as np

        info = np.iinfo(recipe.dtype)
        if not (info.min <= recipe.nodata <= info.max and float(recipe.nodata).is_integer()):
            raise EarthEngineError(
                f"recipe {recipe.datakind}: nodata {recipe.nodata:g} is not a {recipe.dtype} "
                f"value ({info.min}..{info.max})",
                "give a nodata value the dtype can hold, e.g. nodata = 0",
            )
    check_graph(recipe.request_image())


# --------------------------------------------------------------------------- built-in recipes


def _s1_parts(year: int, reducer: str) -> list[Call]:
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
                red = reduce(map_images(coll, select(Arg("image"), [pol])), reducer)
                parts.append(select(red, [pol], [f"{season}_{pol.lower()}{orbit}"]))
    assert tuple(f"{p.args['newNames'][0]}" for p in parts) == spec.S1GRD_BANDS
    return parts


def s1grd(year: int) -> Recipe:
    """Seasonal S1 GRD means per orbit, written as M3LEO's published files are (uint16 view of
    dB truncated to int16), 16 bands named as ``s1grd-YYYY``."""
    return Recipe(
        f"s1grd-{year}", stack(_s1_parts(year, "mean")), spec.S1GRD_BANDS, "uint16",
        wire_dtype="float32", encoding="int16-db", nodata=S1_NODATA, published=True,
        description="Sentinel-1 GRD seasonal means (dB truncated to int16, stored as uint16)",
        source="geetiles defs/s1grd.py at 05ee4ca (2023-06-19)",
    )  # fmt: skip


def s1grd_median(year: int) -> Recipe:
    """Seasonal S1 GRD medians as float32 dB (geetiles' later reducer, not M3LEO's files)."""
    return Recipe(
        f"s1grd-median-{year}", stack(_s1_parts(year, "median")), spec.S1GRD_BANDS, "float32",
        description="Sentinel-1 GRD seasonal medians (float32 dB)",
        source="geetiles defs/s1grd.py at 05ee4ca (2023-06-19), median instead of mean",
    )  # fmt: skip


def s2rgbm(year: int) -> Recipe:
    """Monthly QA60-masked S2 RGB medians, visualised 0-0.3 to uint8, 36 bands ``MM_colour``."""
    if year in QA60_EMPTY_YEARS:
        raise EarthEngineError(
            f"s2rgbm-{year} cannot be made as M3LEO made it: Sentinel-2's QA60 band carried no "
            "cloud polygons from 25 January 2022 to February 2024, so its cloud mask masks "
            "nothing",
            "use a year before 2022 or after 2024, or a recipe file of your own (docs/aoi.md)",
        )
    months = []
    for m in range(1, 13):
        # geetiles' table: filterDate(first, last) with the end exclusive, February to the
        # 28th in every year
        last = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[m - 1]
        start, end = f"{year}-{m:02d}-01", f"{year}-{m:02d}-{last:02d}"
        coll = collection(
            "COPERNICUS/S2_SR_HARMONIZED", start, end, [("CLOUDY_PIXEL_PERCENTAGE", "lt", 20)]
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
        f"s2rgbm-{year}", stack(months), spec.S2RGBM_BANDS, "uint8", nodata=0, published=True,
        description="Sentinel-2 monthly QA60-masked RGB medians, visualised 0-0.3",
        source="geetiles defs/s2rgbm.py at 7beae01 (2023-07-25)",
    )  # fmt: skip


def esaworldcover(year: int) -> Recipe:
    versions = {2020: "ESA/WorldCover/v100", 2021: "ESA/WorldCover/v200"}
    if year not in versions:
        raise EarthEngineError(
            f"ESA WorldCover has no {year} map", "use esaworldcover-2020 or esaworldcover-2021"
        )
    img = Call("Collection.first", collection=Call("ImageCollection.load", id=versions[year]))
    return Recipe(
        f"esaworldcover-{year}", select(img, ["Map"]), spec.ESAWC_BANDS, "uint8", nodata=0,
        label=True, published=True, description=f"ESA WorldCover {year} ({versions[year]})",
        source="geetiles defs/esaworldcover.py at 3201a53 (2023-07-06)",
    )  # fmt: skip


BUILTINS = {
    "s1grd": s1grd,
    "s1grd-median": s1grd_median,
    "s2rgbm": s2rgbm,
    "esaworldcover": esaworldcover,
}


def builtin_recipe(name: str) -> Recipe:
    """``s1grd-2020``, ``s1grd-median-2020``, ``s2rgbm-2020``, ``esaworldcover-2020``."""
    m = re.fullmatch(r"([a-z0-9-]+?)-(\d{4})", name)
    if not m or m.group(1) not in BUILTINS:
        raise EarthEngineError(
            f"no built-in recipe {name!r}",
            "use s1grd-YYYY, s1grd-median-YYYY, s2rgbm-YYYY, esaworldcover-YYYY or a recipe "
            "file (--recipe FILE.toml)",
        )
    recipe = BUILTINS[m.group(1)](int(m.group(2)))
    check_recipe(recipe)
    return recipe


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
        nodata = doc.get("nodata")
        if nodata is not None:
            nodata = float(nodata)
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
    recipe = Recipe(
        datakind, select(img, bands, names), tuple(names), dtype, nodata=nodata,
        label=bool(doc.get("label")), high_volume=bool(doc.get("high_volume", False)),
        description=str(doc.get("description", f"your own layer from {Path(path).name}")),
    )  # fmt: skip
    check_recipe(recipe)
    return recipe
