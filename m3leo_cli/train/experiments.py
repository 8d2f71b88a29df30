"""The packaged Hydra experiments: list them, compose one with command-line overrides.

``conf/train.yaml`` is the primary config; ``experiment=<task>/<input>`` pulls
``conf/experiment/<task>/<input>.yaml``, which names a ``task/`` (target, head) and an
``input/`` (layers and bands). Composition uses Hydra's compose API on the package itself
(``pkg://m3leo_cli.train.conf``), so the configs travel inside the wheel and nothing is read
from the working directory. ``hydra.run.dir=...`` picks the run folder, as with ``@hydra.main``.

The authors' config names (``configs/<folder>/<name>`` in spaceml-org/M3LEO) are aliases:
``experiment=baseline-esawc/s1grd-vv-vh`` composes ``esawc/s1grd`` (:func:`aliases` maps them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import TrainConfigError, UnknownExperimentError

CONFIG_MODULE = "m3leo_cli.train.conf"
TASKS = ("esawc", "agb", "ghsbuilts", "modisveg", "mae")
# the authors' input folders -> m3leo's inputs, for baselines and for fusions (+ s2rgbm)
_BASELINE = {"s1grd-vv-vh": "s1grd", "s1grd-vv": "s1grd-vv", "s1grd-vh": "s1grd-vh",
             "gssic": "gssic", "gunw": "gunw", "s2rgbm": "s2rgbm"}  # fmt: skip
_FUSION = {"s1grd-vv-vh": "s1grd+s2rgbm", "gssic": "gssic+s2rgbm", "gunw": "gunw+s2rgbm"}
_MAE = {"mae-pretraining/s1grd": "mae/pretrain", "mae-finetuning/s1grd-to-esawc": "mae/esawc",
        "mae-finetuning/s1grd-to-veg": "mae/modisveg"}  # fmt: skip


def experiments() -> list[str]:
    """Every packaged experiment name, ``<task>/<input>``, sorted by task then input."""
    root = resources.files(CONFIG_MODULE) / "experiment"
    out = []
    for task in root.iterdir():
        if not task.is_dir():
            continue
        for f in task.iterdir():
            if f.name.endswith(".yaml"):
                out.append(f"{task.name}/{f.name[:-5]}")
    order = {t: i for i, t in enumerate(TASKS)}
    return sorted(out, key=lambda n: (order.get(n.split("/")[0], 9), n))


def aliases() -> dict[str, str]:
    """The authors' experiment names -> m3leo's, for the experiments packaged here."""
    names = set(experiments())
    out: dict[str, str] = {}
    for task in ("esawc", "agb", "ghsbuilts"):
        for theirs, ours in _BASELINE.items():
            out[f"baseline-{task}/{theirs}"] = f"{task}/{ours}"
        for theirs, ours in _FUSION.items():
            out[f"fusion-{task}/{theirs}"] = f"{task}/{ours}"
    out.update(_MAE)
    return {k: v for k, v in sorted(out.items()) if v in names}


@dataclass
class Composed:
    """A composed experiment: the config (without Hydra's own section) and its run folder."""

    config: dict[str, Any]
    run_dir: Path
    overrides: list[str]

    @property
    def name(self) -> str:
        return str(self.config.get("experiment_name") or "custom")


def _experiment_of(overrides: Sequence[str]) -> str | None:
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and key.lstrip("+~") == "experiment":
            return value
    return None


def compose(overrides: Sequence[str]) -> Composed:
    """Compose ``train.yaml`` with ``overrides`` (Hydra syntax); resolve interpolations."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    name = _experiment_of(overrides)
    alias = aliases().get(name or "")
    if alias is not None:  # the authors' name: compose m3leo's experiment of that name
        overrides = [f"experiment={alias}" if _experiment_of([o]) == name else o for o in overrides]
        name = alias
    if name is not None and name not in experiments():
        raise UnknownExperimentError(name, experiments())
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
            run_dir = Path(str(cfg.hydra.run.dir))
            with open_dict(cfg):
                del cfg["hydra"]
            plain = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainConfigError(
            f"cannot compose the experiment: {first}",
            "overrides are key=value (e.g. trainer.max_epochs=1 data.regions=[europe]); "
            "`m3leo train --list` shows the experiments",
        ) from None
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(plain, dict)
    config: dict[str, Any] = {str(k): v for k, v in plain.items()}
    unlabelled = (config.get("model") or {}).get("name") == "mae"  # MAE pre-training: no target
    if not config.get("data", {}).get("inputs") or not (config["data"].get("target") or unlabelled):
        raise TrainConfigError(
            "no experiment chosen: the config names no inputs or target",
            "pick one, e.g. experiment=esawc/s1grd (`m3leo train --list` shows them all)",
        )
    return Composed(config, run_dir, overrides)


def to_yaml(config: dict[str, Any]) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config))


def load_yaml(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    out = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}
