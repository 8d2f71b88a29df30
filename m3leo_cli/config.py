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

from .errors import ConfigError, ConfigNotFoundError, UsageError

DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_WORKERS = 256  # more threads than this only burns memory and file descriptors
MAX_PROCESSES = 64


def _default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("m3leo", appauthor=False))


def _default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("m3leo", appauthor=False))


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
    plan: str | None = None  # Hub plan for the quotas: anonymous | free | pro (default: by token)
    revision: str = "main"
    workers: int = 16
    processes: int | None = None  # miniset downloads over this many processes (None: CPU count)
    # Hub quotas per window, by bucket (None: the plan's published quota, see PLAN_QUOTAS)
    requests_per_window: int | None = None  # resolvers: /resolve/ URLs
    api_per_window: int | None = None  # /api/ calls, tree listing pages included
    pages_per_window: int | None = None  # web pages (m3leo requests none)
    window_seconds: float = 300.0
    max_retries: int = 6
    timeout: float = 30.0
    # a whole answer's deadline: its head within answer_budget seconds, then a body that keeps
    # an average of min_rate bytes/s (a server trickling bytes cannot hold a worker forever)
    answer_budget: float = 120.0
    min_rate: float = 8192.0
    debug: bool = False
    fetch: str = "auto"  # full edition, per shard: auto | whole | ranges
    keep_shards: bool = False  # full edition: keep downloaded shards after unpacking
    lfs_batch: bool = True  # content links by the hundred (Git LFS batch API), else per file
    engine: str = "local"  # heavy commands run here ("local") or on a Dask cluster ("dask")
    scheduler: str | None = None  # Dask scheduler address; none: a LocalCluster on this machine
    progress_bars: bool = True  # False: HF_HUB_DISABLE_PROGRESS_BARS (messages still shown)
    # network environment, read like huggingface_hub (requests/httpx) reads it
    http_proxy: str | None = None
    https_proxy: str | None = None
    all_proxy: str | None = None
    no_proxy: str | None = None
    ca_bundle: Path | None = None
    # Earth Engine (`m3leo gee`): Cloud project, REST base URL, an OAuth access token
    ee_project: str | None = None
    ee_endpoint: str = "https://earthengine.googleapis.com"
    ee_token: str | None = None
    ee_high_volume: bool = False  # the high-volume endpoint when ee_endpoint is not set
    ee_credentials: Path | None = None  # a service-account key (or user credentials) file
    ee_token_uri: str | None = None  # where tokens are asked for (default: the credentials')
    ee_timeout: float = 300.0  # read timeout of one computePixels request (0: none)
    ee_max_retries: int = 6
    ee_backoff: float = 1.0  # first backoff wait (s), doubling, jittered
    cloud_project: str | None = None  # GOOGLE_CLOUD_PROJECT: gee's last guess at a project
    config_path: Path | None = None
    # per-user files m3leo may write when the store is read-only (band statistics)
    cache_dir: Path | None = None
    # where each value came from ("command line", "$VAR", the config file); absent = default
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")

    @property
    def hub_plan(self) -> str:
        """The plan whose quotas apply: the setting, else "free" with a token, else "anonymous"."""
        return self.plan or ("free" if self.token else "anonymous")

    @property
    def request_budget(self) -> int:
        """Resolver requests per window: the explicit setting, else the Hub's published quota."""
        if self.requests_per_window is not None:
            return self.requests_per_window
        return PLAN_QUOTAS[self.hub_plan]["resolvers"]

    @property
    def budgets(self) -> dict[str, int]:
        """Requests per window for each of the Hub's buckets: resolvers, api, pages."""
        quota = PLAN_QUOTAS[self.hub_plan]
        return {
            "resolvers": self.request_budget,
            "api": self.api_per_window if self.api_per_window is not None else quota["api"],
            "pages": self.pages_per_window if self.pages_per_window is not None else quota["pages"],
        }

    def with_overrides(self, **kw: Any) -> Settings:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


# The Hub's published quotas per 5-minute window (huggingface.co/docs/hub/rate-limits).
PLAN_QUOTAS: dict[str, dict[str, int]] = {
    "anonymous": {"api": 500, "resolvers": 3000, "pages": 100},
    "free": {"api": 1000, "resolvers": 5000, "pages": 200},
    "pro": {"api": 2500, "resolvers": 12000, "pages": 400},
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# setting name -> (environment variables in priority order)
_ENV: dict[str, tuple[str, ...]] = {
    "data_dir": ("M3LEO_DATA_DIR",),
    "endpoint": ("M3LEO_ENDPOINT", "HF_ENDPOINT"),
    "token": ("M3LEO_TOKEN", "HF_TOKEN"),
    "offline": ("M3LEO_OFFLINE", "HF_HUB_OFFLINE"),
    "plan": ("M3LEO_PLAN",),
    "revision": ("M3LEO_REVISION",),
    "workers": ("M3LEO_WORKERS",),
    "processes": ("M3LEO_PROCESSES",),
    "requests_per_window": ("M3LEO_REQUESTS_PER_WINDOW",),
    "api_per_window": ("M3LEO_API_PER_WINDOW",),
    "pages_per_window": ("M3LEO_PAGES_PER_WINDOW",),
    "window_seconds": ("M3LEO_WINDOW_SECONDS",),
    "max_retries": ("M3LEO_MAX_RETRIES",),
    "timeout": ("M3LEO_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"),
    "answer_budget": ("M3LEO_ANSWER_BUDGET",),
    "min_rate": ("M3LEO_MIN_RATE",),
    "debug": ("M3LEO_DEBUG",),
    "fetch": ("M3LEO_FETCH",),
    "keep_shards": ("M3LEO_KEEP_SHARDS",),
    "lfs_batch": ("M3LEO_LFS_BATCH",),
    "engine": ("M3LEO_ENGINE",),
    "scheduler": ("M3LEO_DASK_SCHEDULER",),
    "progress_bars": ("M3LEO_PROGRESS_BARS",),
    # lower case first, as curl, requests and httpx read them
    "http_proxy": ("http_proxy", "HTTP_PROXY"),
    "https_proxy": ("https_proxy", "HTTPS_PROXY"),
    "all_proxy": ("all_proxy", "ALL_PROXY"),
    "no_proxy": ("no_proxy", "NO_PROXY"),
    "ca_bundle": (
        "M3LEO_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",  # a folder of hashed certificates
    ),
    "cache_dir": ("M3LEO_CACHE_DIR",),
    "ee_project": ("M3LEO_EE_PROJECT", "EE_PROJECT_ID"),
    "ee_endpoint": ("M3LEO_EE_ENDPOINT",),
    "ee_token": ("M3LEO_EE_TOKEN",),
    "ee_high_volume": ("M3LEO_EE_HIGH_VOLUME",),
    "ee_credentials": ("M3LEO_EE_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS"),
    "ee_token_uri": ("M3LEO_EE_TOKEN_URI",),
    "ee_timeout": ("M3LEO_EE_TIMEOUT",),
    "ee_max_retries": ("M3LEO_EE_MAX_RETRIES",),
    "ee_backoff": ("M3LEO_EE_BACKOFF",),
    "cloud_project": ("GOOGLE_CLOUD_PROJECT",),
}
# huggingface_hub's boolean variables: true when the upper-cased value is one of these, else
# false (never an error); m3leo's own M3LEO_* booleans stay strict.
_HF_TRUE = {"1", "ON", "YES", "TRUE"}
_HF_BOOLS = {"HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"}
_HF_TOKEN_FILE = "token"


def _coerce(name: str, value: Any, source: str) -> Any:
    types = {f.name: f.type for f in fields(Settings)}
    kind = str(types[name])
    try:
        if name in ("data_dir", "config_path", "ca_bundle", "cache_dir", "ee_credentials"):
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
    named = overrides.get("config_path") or env.get("M3LEO_CONFIG")
    if named and str(cfg_path) != os.devnull and not cfg_path.is_file():
        via = "config_path" if overrides.get("config_path") else "M3LEO_CONFIG"
        what = "is a folder" if cfg_path.is_dir() else "does not exist"
        raise ConfigNotFoundError(f"the config file {cfg_path} ({via}) {what}")
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
                raw_value: Any = env[var]
                if var in _HF_BOOLS:
                    raw_value = raw_value.strip().upper() in _HF_TRUE
                values[name] = _coerce(name, raw_value, f"${var}")
                sources[name] = f"${var}"
                break
        else:
            if name in file_values:
                values[name] = file_values[name]
                sources[name] = str(cfg_path)
            elif name == "progress_bars" and "HF_HUB_DISABLE_PROGRESS_BARS" in env:
                values[name] = env["HF_HUB_DISABLE_PROGRESS_BARS"].strip().upper() not in _HF_TRUE
                sources[name] = "$HF_HUB_DISABLE_PROGRESS_BARS"
            elif name == "token":
                stored = stored_token(env)
                if stored is not None:
                    values[name], sources[name] = stored
    if "data_dir" not in values:
        values["data_dir"] = _default_data_dir()
    if "cache_dir" not in values:
        values["cache_dir"] = _default_cache_dir()
    values["config_path"] = cfg_path
    sources["config_path"] = "$M3LEO_CONFIG" if env.get("M3LEO_CONFIG") else "default"
    _check_endpoint(values.get("endpoint", DEFAULT_ENDPOINT), sources.get("endpoint", "default"))
    if values.get("token") and plain_http_host(values.get("endpoint", DEFAULT_ENDPOINT)):
        where = sources.get("token", "")
        if where not in ("command line", "$HF_TOKEN", "$M3LEO_TOKEN"):  # stored: stays home
            values["token"] = None
            sources["token"] = f"withheld ({where}: never sent over plain http://)"
    s = Settings(**values, sources=sources)
    if s.plan is not None and s.plan not in PLAN_QUOTAS:
        raise ConfigError(
            f"unknown Hub plan {s.plan!r} (from {sources.get('plan')})",
            "set M3LEO_PLAN (or plan = ... in the config file) to anonymous, free or pro",
        )
    register_local(s.data_dir)
    if s.processes is not None and not 1 <= s.processes <= MAX_PROCESSES:
        raise ConfigError(
            f"processes must be between 1 and {MAX_PROCESSES}, not {s.processes} "
            f"(from {sources.get('processes', 'config')})",
            "set M3LEO_PROCESSES (or processes = ... in the config file) to 1 or more",
        )
    if not 1 <= s.workers <= MAX_WORKERS:
        msg = f"workers must be between 1 and {MAX_WORKERS}, not {s.workers}"
        if "workers" in overrides:  # a flag: a usage error whose hint names the flag
            raise UsageError("--" + msg, "e.g. --workers 16")
        raise ConfigError(f"{msg} (from {sources.get('workers', 'config')})")
    return s


def hf_home(env: Mapping[str, str]) -> Path | None:
    """huggingface_hub's home: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
    ~/.cache/huggingface (None when ``env`` is a bare mapping that names no home)."""
    if env.get("HF_HOME"):
        return Path(os.path.expanduser(env["HF_HOME"]))
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "huggingface"
    home = env.get("HOME") or (str(Path.home()) if env is os.environ else None)
    return Path(home) / ".cache" / "huggingface" if home else None


def stored_token(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The token `hf auth login` saved, and where it came from, in huggingface_hub's order:
    the file $HF_TOKEN_PATH names, else ``<HF_HOME>/token``. None when there is none."""
    if env.get("HF_TOKEN_PATH"):
        path: Path | None = Path(os.path.expanduser(env["HF_TOKEN_PATH"]))
        where = "$HF_TOKEN_PATH"
    else:
        home = hf_home(env)
        path = home / _HF_TOKEN_FILE if home is not None else None
        where = "stored token"
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return (token, f"{where} ({path})") if token else None


def plain_http_host(endpoint: str) -> str | None:
    """The endpoint's host when it is reached over plain ``http://`` and is not this machine
    (a token sent there can be read on the way); None otherwise."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or not host or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return host


def token_warning(settings: Settings) -> str | None:
    """One line to show when an explicit token goes over plain http:// to another machine."""
    host = plain_http_host(settings.endpoint)
    if settings.token and host:
        return (
            f"warning: the token ({settings.source_of('token')}) is sent over plain http:// "
            f"to {host}; anyone on the way can read it (use https://, or unset the token)"
        )
    return None


def _check_endpoint(endpoint: str, source: str) -> None:
    """An endpoint without http(s):// or a host would be retried as a network error: refuse it."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    if parts.scheme in ("http", "https") and parts.hostname:
        return
    hint = "give the full URL, e.g. https://huggingface.co or http://mirror.local:8080"
    raise UsageError(
        f"malformed Hub endpoint {endpoint!r} (from {source}): no http(s):// or host", hint
    )


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
