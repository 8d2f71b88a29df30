"""Settings, resolved once: flag > M3LEO_* (and HF_*) environment > TOML file > default.

Nothing else in m3leo reads ``os.environ``: commands call :func:`load_settings` once and pass
the frozen :class:`Settings` down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, UsageError

DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_WORKERS = 256  # more threads than this only burns memory and file descriptors


def _default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("m3leo", appauthor=False))


def default_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("m3leo", appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class Settings:
    """Every knob m3leo has. Documented, one by one, in docs/environment.md."""

    data_dir: Path
    endpoint: str = DEFAULT_ENDPOINT
    token: str | None = None
    offline: bool = False
    revision: str = "main"
    workers: int = 16
    # Hub resolver quota: requests per window (anonymous 3,000 / 5 min; 5,000 with a token)
    requests_per_window: int | None = None
    window_seconds: float = 300.0
    max_retries: int = 6
    timeout: float = 30.0
    debug: bool = False
    fetch: str = "auto"  # full edition, per shard: auto | whole | ranges
    keep_shards: bool = False  # full edition: keep downloaded shards after unpacking
    # Earth Engine (`m3leo gee`): Cloud project, REST base URL, an OAuth access token
    ee_project: str | None = None
    ee_endpoint: str = "https://earthengine-highvolume.googleapis.com"
    ee_token: str | None = None
    config_path: Path | None = None
    # where each value came from ("command line", "$VAR", the config file); absent = default
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")

    @property
    def request_budget(self) -> int:
        """Resolver requests per window: the explicit setting, else the Hub's published quota."""
        if self.requests_per_window is not None:
            return self.requests_per_window
        return 5000 if self.token else 3000

    def with_overrides(self, **kw: Any) -> Settings:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# setting name -> (environment variables in priority order)
_ENV: dict[str, tuple[str, ...]] = {
    "data_dir": ("M3LEO_DATA_DIR",),
    "endpoint": ("M3LEO_ENDPOINT", "HF_ENDPOINT"),
    "token": ("M3LEO_TOKEN", "HF_TOKEN"),
    "offline": ("M3LEO_OFFLINE", "HF_HUB_OFFLINE"),
    "revision": ("M3LEO_REVISION",),
    "workers": ("M3LEO_WORKERS",),
    "requests_per_window": ("M3LEO_REQUESTS_PER_WINDOW",),
    "window_seconds": ("M3LEO_WINDOW_SECONDS",),
    "max_retries": ("M3LEO_MAX_RETRIES",),
    "timeout": ("M3LEO_TIMEOUT",),
    "debug": ("M3LEO_DEBUG",),
    "fetch": ("M3LEO_FETCH",),
    "keep_shards": ("M3LEO_KEEP_SHARDS",),
    "ee_project": ("M3LEO_EE_PROJECT", "EE_PROJECT_ID"),
    "ee_endpoint": ("M3LEO_EE_ENDPOINT",),
    "ee_token": ("M3LEO_EE_TOKEN",),
}


def _coerce(name: str, value: Any, source: str) -> Any:
    types = {f.name: f.type for f in fields(Settings)}
    kind = str(types[name])
    try:
        if name == "data_dir" or name == "config_path":
            return Path(os.path.expanduser(str(value)))
        if "bool" in kind:
            if isinstance(value, bool):
                return value
            v = str(value).strip().lower()
            if v in _TRUE:
                return True
            if v in _FALSE:
                return False
            raise ValueError(value)
        if "int" in kind:
            return int(value)
        if "float" in kind:
            return float(value)
        if name == "endpoint":
            return str(value).rstrip("/")
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value {value!r} for {name} (from {source})") from None


def load_settings(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Resolve settings from flags (``overrides``), the environment and the TOML file."""
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}

    cfg_path = Path(
        overrides.get("config_path") or env.get("M3LEO_CONFIG") or default_config_path()
    )
    file_values: dict[str, Any] = {}
    if cfg_path.is_file():
        import tomli

        try:
            with cfg_path.open("rb") as fh:
                raw = tomli.load(fh)
        except (OSError, tomli.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {cfg_path}: {exc}") from None
        known = {f.name for f in fields(Settings)}
        for key, value in raw.items():
            k = key.replace("-", "_")
            if k not in known or k in ("config_path", "sources"):
                raise ConfigError(
                    f"unknown setting {key!r} in {cfg_path}",
                    "known settings: " + ", ".join(sorted(_ENV)),
                )
            file_values[k] = _coerce(k, value, str(cfg_path))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in fields(Settings):
        name = f.name
        if name == "sources":
            continue
        if name in overrides:
            values[name] = _coerce(name, overrides[name], "command line")
            sources[name] = "command line"
            continue
        for var in _ENV.get(name, ()):
            if var in env and (env[var] != "" or name in ("offline", "debug")):
                values[name] = _coerce(name, env[var], f"${var}")
                sources[name] = f"${var}"
                break
        else:
            if name in file_values:
                values[name] = file_values[name]
                sources[name] = str(cfg_path)
    if "data_dir" not in values:
        values["data_dir"] = _default_data_dir()
    values["config_path"] = cfg_path
    sources["config_path"] = "$M3LEO_CONFIG" if env.get("M3LEO_CONFIG") else "default"
    s = Settings(**values, sources=sources)
    register_local(s.data_dir)
    if not 1 <= s.workers <= MAX_WORKERS:
        msg = f"workers must be between 1 and {MAX_WORKERS}, not {s.workers}"
        if "workers" in overrides:  # a flag: a usage error whose hint names the flag
            raise UsageError("--" + msg, "e.g. --workers 16")
        raise ConfigError(f"{msg} (from {sources.get('workers', 'config')})")
    return s


def register_local(data_dir: Path) -> None:
    """Tell the spec which regions and datakinds of your own the store holds.

    The local edition (``m3leo grid``) keeps ``<data_dir>/local/<name>/m3leo-region.json``;
    reading those (a glob and a few small JSON files) here, once per settings load, lets
    ``--edition local --region <name>`` resolve like a published region everywhere.
    """
    import json

    from . import spec

    regions: list[spec.Region] = []
    families: dict[str, spec.Family] = {}
    root = Path(data_dir) / spec.LOCAL_EDITION
    for path in sorted(root.glob("*/m3leo-region.json")) if root.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            name, phash, tag = doc["name"], doc["partition_hash"], doc["split_tag"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged record: that region stays unknown, `m3leo grid` rewrites it
        if name != path.parent.name or name in spec.REGIONS:
            continue
        regions.append(spec.Region(name, phash, tag, int(doc.get("chips", 0)), "local", (0, 0)))
        for dk, info in (doc.get("datakinds") or {}).items():
            if spec.is_published_name(dk) or not isinstance(info, dict):
                continue
            families[dk] = spec.Family(
                dk,
                "tif",
                "chip",
                str(info.get("dtype", "float32")),
                bands=tuple(info.get("bands") or ()),
                resolution_m=float(info.get("resolution_m", 10.0)),
                label=bool(info.get("label", False)),
                description=str(info.get("description", "your own layer")),
            )
    spec.set_local_regions(regions)
    spec.set_local_datakinds(list(families.values()))
