"""The authors' preprocessing rules, written out here from their documented behaviour, against
``data.preprocessing=paper`` on a synthetic store: the maximum difference per tensor.

    .venv/bin/python benchmarks/bench_vs_paper.py [--tiles 20] [--chip 64]

The rules (spaceml-org/M3LEO, ``fdlsar``; re-stated, not copied):

- **constants**: per region, from the train split (at most 1,000 random tiles), per band
  ``mean = nansum(x) / n`` and ``std = sqrt(nansum(x^2) / n - mean^2)`` with ``n`` every pixel
  of every sampled tile, inputs ``(x - mean) / (std + 1e-5)``;
- **ESA WorldCover**: class ``i`` where the code is the i-th of 10, 20, ..., 100 (95 between
  90 and 100), class 0 everywhere else (no data and unknown codes included);
- **GHS-BUILT-S and biomass**: the native grid, NaN -> 0, resized to 45 x 55 (bilinear,
  antialiased), multiplied by ``nanmean(original) / nanmean(resized)`` when both are non-zero;
- **MODIS tree cover**: water (200) -> 0;
- **GUNW**: a ``days=lo-hi`` rule takes the first in-range date pair in file order; values
  are normalised on the native grid with constants per variable (every date pair of the
  train tiles sampled, fill-masked values only: ``n`` counts valid pixels), fill values and
  NaN become 0 there, and the array is resized onto the chip (bilinear, antialiased, the
  zeros taken as values).

The loaded input arrays themselves are m3leo's (the issue 28 comparison found them equal to the
authors' once the constants agree): ``x`` is ``StoreDataset`` without normalisation. Each
rule is computed here with numpy from the stored files, and compared with what
``StoreDataset(..., preprocessing="paper")`` yields. ``tests/test_train_paper.py`` asserts
the differences are 0 (or float rounding).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ESA_CODES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
SEASONS = ("winter", "spring", "summer", "fall")
S1 = tuple(f"{s}_{p}asc" for p in ("vv", "vh", "vv-vh") for s in SEASONS)
GSSIC = tuple(f"coherence:{s}:36" for s in SEASONS)
GUNW_RULES = ("unwrappedPhase:days=0-60", "unwrappedPhase:days=72-132", "coherence:days=0-400")
GUNW = "gunw_2020-01-01_2020-03-31"
DATAKINDS = ("s1grd-2020", "gssic", GUNW, "esaworldcover-2020", "ghsbuilts-2020",
             "biomass-2020", "modis44b006veg")  # fmt: skip


# ----------------------------------------------------------------- the authors' rules, here


def their_constants(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per band mean and std + 1e-5 over the sampled tiles' decoded (C, H, W) arrays."""
    total = np.zeros(arrays[0].shape[0])
    squares = np.zeros(arrays[0].shape[0])
    n = 0
    for x in arrays:
        flat = x.reshape(x.shape[0], -1).astype(np.float64)
        total += np.nansum(flat, axis=1)
        squares += np.nansum(flat**2, axis=1)
        n += flat.shape[1]
    mean = total / n
    return mean, np.sqrt(squares / n - mean**2) + 1e-5


def their_worldcover(codes: np.ndarray) -> np.ndarray:
    out = np.zeros(codes.shape, dtype=np.int64)
    for i, code in enumerate(ESA_CODES):
        out[codes == code] = i
    return out


def their_regression(values: np.ndarray) -> np.ndarray:
    """(H, W) float with NaN for no data -> their (45, 55) target."""
    import torch
    from torch.nn import functional as F

    with np.errstate(invalid="ignore"):
        original = np.nanmean(values)
    t = torch.from_numpy(np.where(np.isnan(values), 0.0, values).astype(np.float32))
    out = F.interpolate(t[None, None], size=(45, 55), mode="bilinear", antialias=True,
                        align_corners=False)[0, 0]  # fmt: skip
    now = float(torch.nanmean(out))
    if now != 0.0 and original != 0.0 and np.isfinite(original):
        out = out * float(original / now)
    return out.numpy()


def their_gunw_constants(arrays: list[np.ndarray]) -> tuple[float, float]:
    """One variable's mean and std + 1e-5 over the valid (non-NaN) values of every date pair
    of the sampled tiles."""
    total, squares, n = 0.0, 0.0, 0
    for x in arrays:
        valid = x[np.isfinite(x)].astype(np.float64)
        total += float(valid.sum())
        squares += float((valid**2).sum())
        n += valid.size
    mean = total / n
    return mean, float(np.sqrt(squares / n - mean**2)) + 1e-5


def their_gunw(values: np.ndarray, chip: int, constants: tuple[float, float] | None) -> np.ndarray:
    """(H, W) float32 with NaN for no data -> their (chip, chip) input channel: normalised
    on the native grid, NaN -> 0, resized (bilinear, antialiased)."""
    import torch
    from torch.nn import functional as F

    x = values.astype(np.float32)
    if constants is not None:
        x = (x - np.float32(constants[0])) / np.float32(constants[1])
    x = np.where(np.isnan(x), np.float32(0.0), x)
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None]
    return F.interpolate(t, size=(chip, chip), mode="bilinear", antialias=True,
                         align_corners=False)[0, 0].numpy()  # fmt: skip


def their_pair(token: str, stored: list[str]) -> str | None:
    var, lo, hi = re.match(r"^(\w+):days=(\d+)-(\d+)$", token).groups()  # type: ignore[union-attr]
    for name in stored:
        m = re.match(rf"^{var}:(\d{{8}})_(\d{{8}})$", name)
        if m is None:
            continue
        a, b = (date(int(s[:4]), int(s[4:6]), int(s[6:])) for s in m.groups())
        if int(lo) <= abs((a - b).days) <= int(hi):
            return name
    return None


# ----------------------------------------------------------------------- the comparison


def _spec(inputs: Any, target: Any, chip: int, regions: tuple[str, ...], **kw: Any) -> Any:
    from m3leo_cli.train.layers import DataSpec

    return DataSpec(inputs, target, chip, regions=regions, **kw)


def compare(
    chip: int, regions: tuple[str, ...] = ("europe", "conus"), preprocessing: str = "paper"
) -> dict[str, float]:
    """Max |theirs - ours| per tensor over the val split (the store: M3LEO_DATA_DIR), ours
    being ``data.preprocessing=<preprocessing>`` (``m3leo``: how far the default is; a
    target of another shape counts as ``inf``)."""
    pre = preprocessing
    from m3leo_cli.config import load_settings
    from m3leo_cli.export.resample import resample
    from m3leo_cli.tiles.model import decode
    from m3leo_cli.tiles.reader import band_names, read_tile
    from m3leo_cli.train.dataset import StoreDataset, plan_split
    from m3leo_cli.train.layers import InputSpec, TargetSpec

    settings = load_settings()
    out: dict[str, float] = {}
    # 1. inputs: their constants per region, from the train split's decoded tiles
    for dk, bands in (("s1grd-2020", S1), ("gssic", GSSIC)):
        target = TargetSpec("esaworldcover-2020", "Map", "classification", ESA_CODES)
        paper = _spec((InputSpec(dk, bands),), target, chip, regions, preprocessing=pre)
        raw = replace(paper, normalize=False, preprocessing="m3leo")
        ours, x = StoreDataset(paper, "val", settings), StoreDataset(raw, "val", settings)
        train = plan_split(settings, raw, "train")
        constants = {}
        for region in regions:
            arrays = [decode(read_tile(s.files[dk].path, dk, list(bands)))
                      for s in train.samples if s.region == region and dk in s.files]  # fmt: skip
            constants[region] = their_constants(arrays)
        worst = 0.0
        for i, s in enumerate(ours.plan.samples):
            mean, std = constants[s.region]
            xi = x[i]["image"].numpy()
            want = (xi - mean[:, None, None]) / std[:, None, None]
            got = ours[i]["image"].numpy()
            valid = xi != 0  # no data is 0 in both
            worst = max(worst, float(np.abs(got - want)[valid].max()))
        out[f"image ({dk}, normalised)"] = worst
    # 2. targets
    inputs = (InputSpec("s1grd-2020", ("winter_vvasc",)),)
    cases = (("esaworldcover-2020", "Map", "classification", ESA_CODES, "mask"),
             ("ghsbuilts-2020", "built_surface", "regression", (), "target"),
             ("biomass-2020", "agb", "regression", (), "target"),
             ("modis44b006veg", "Percent_Tree_Cover_2020", "regression", (), "target"))  # fmt: skip
    for dk, band, task, classes, key in cases:
        t = TargetSpec(dk, band, task, tuple(classes))
        ours = StoreDataset(_spec(inputs, t, chip, regions, preprocessing=pre), "val", settings)
        worst = 0.0
        for i, s in enumerate(ours.plan.samples):
            tile = read_tile(s.files[dk].path, dk, [band])
            if dk.startswith("esaworldcover"):
                codes, _ = resample(tile.data, chip, nearest=True, family="esaworldcover")
                want = their_worldcover(codes[0])
            elif dk.startswith("modis"):
                v, _ = resample(tile.data, chip, nearest=True, family="modis44b006veg")
                want = np.where(v[0] == 200, 0, v[0]).astype(np.float32)
            else:
                want = their_regression(decode(tile)[0])
            got = ours[i][key].numpy()
            if got.shape != want.shape:
                worst = float("inf")
                continue
            diff = np.abs(got.astype(np.float64) - want)
            worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
        out[f"{key} ({dk})"] = worst
    # 3. GUNW: the first in-range pair, their normalisation and fill, raw and normalised
    t = TargetSpec("esaworldcover-2020", "Map", "classification", ESA_CODES)
    for normalize in (False, True):
        spec = _spec((InputSpec(GUNW, GUNW_RULES),), t, chip, regions, normalize=normalize,
                     preprocessing=pre)  # fmt: skip
        ours = StoreDataset(spec, "val", settings)
        constants: dict[tuple[str, str], tuple[float, float]] = {}
        if normalize:
            train = plan_split(settings, replace(spec, normalize=False), "train")
            for region in regions:
                for var in {r.split(":", 1)[0] for r in GUNW_RULES}:
                    arrays = []
                    for s in train.samples:
                        if s.region != region or GUNW not in s.files:
                            continue
                        path = s.files[GUNW].path
                        names = [b for b in band_names(path, GUNW) if b.startswith(var + ":")]
                        arrays.append(decode(read_tile(path, GUNW, names)))
                    constants[(region, var)] = their_gunw_constants(arrays)
        worst, picked = 0.0, 0
        for i, s in enumerate(ours.plan.samples):
            path = s.files[GUNW].path
            stored = list(band_names(path, GUNW))
            got = ours[i]["image"].numpy()
            for c, rule in enumerate(GUNW_RULES):
                name = their_pair(rule, stored)
                if name is None:
                    want = np.zeros(got[c].shape, dtype=np.float32)  # theirs raises: none here
                else:
                    picked += 1
                    values = decode(read_tile(path, GUNW, [name]))[0]
                    var = rule.split(":", 1)[0]
                    want = their_gunw(values, chip, constants.get((s.region, var)))
                worst = max(worst, float(np.abs(got[c] - want).max()))
        how = "normalised" if normalize else "raw"
        out[f"image ({GUNW}, {how}, first in-range pair; {picked} picked)"] = worst
    return out


def prepare(work: Path, tiles: int, chip: int) -> Path:
    """A synthetic miniset of two regions, downloaded from the loopback Hub into a store."""
    from m3leo_cli.cli import main
    from m3leo_cli.server import HubServer
    from m3leo_cli.testing.synth import SynthConfig, write_source

    data = work / f"data-{tiles}-{chip}"
    os.environ["M3LEO_DATA_DIR"] = str(data)
    os.environ["M3LEO_CONFIG"] = os.devnull
    if (data / "done").exists():
        return data
    cfg = SynthConfig(regions=("europe", "conus"), editions=("miniset",), tiles=tiles,
                      chip_px=chip, native_shape=(6, 8), gunw_datepairs=6,
                      datakinds=DATAKINDS)  # fmt: skip
    info = write_source(work / f"src-{tiles}-{chip}", cfg)
    with HubServer(info.root) as srv:
        os.environ["HF_ENDPOINT"] = srv.url
        args = ["download", "--edition", "miniset", "--region", "europe", "--region", "conus",
                "--quiet"] + [a for dk in DATAKINDS for a in ("-m", dk)]  # fmt: skip
        assert main(args) == 0
    (data / "done").write_text("")
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=20)
    ap.add_argument("--chip", type=int, default=64)
    ap.add_argument("--work", type=Path, default=Path("/tmp/m3leo-bench-paper"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args.tiles, args.chip)
    paper, default = compare(args.chip), compare(args.chip, preprocessing="m3leo")
    print("| tensor | paper vs the authors' rules | m3leo (default) vs the authors' rules |")
    print("|---|---|---|")
    for name, diff in paper.items():
        print(f"| {name} | {diff:.3g} | {default[name]:.3g} |")


if __name__ == "__main__":
    main()
