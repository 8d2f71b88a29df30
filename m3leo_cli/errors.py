"""The whole m3leo exception tree.

Every error a user can cause or meet is an ``M3leoError``: a one-line ``message`` and a
``hint`` that names the flag or command that fixes it. The CLI turns them into
``Error: ...`` / ``hint: ...`` on stderr and exits with ``exit_code``. The CLI renders an
``OSError`` from the filesystem (missing or read-only folder, full disk) the same way; anything
else that escapes is a bug and shows its traceback.

The tree, drawn with what each class is for, is in docs/design.md ("The exception tree"); a
test keeps the drawing and this module in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class M3leoError(Exception):
    """Base class: a message for people, a hint that names the fix, an exit code."""

    exit_code = 1
    default_hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # subclasses take other arguments than (message, hint): rebuild around __init__, so an
        # error raised in a worker process (Dask, download processes) arrives here intact
        return (_rebuild, (type(self), self.message, self.hint, dict(self.__dict__)))


def unit_reason(exc: BaseException) -> str:
    """One line saying why a unit of work (a file, a shard, a chip, an export unit) failed,
    for the summary and the JSON report: the message of our own errors, the OS's words and
    the path for a file-system error, else the exception's type and text (never silence)."""
    if isinstance(exc, M3leoError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        path = exc.filename2 or exc.filename  # a rename's failing end is its destination
        where = f": {path}" if path else ""
        return f"{exc.strerror}{where}"
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rebuild(cls: type[M3leoError], message: str, hint: str, state: dict[str, Any]) -> M3leoError:
    exc = cls.__new__(cls)
    M3leoError.__init__(exc, message, hint)
    exc.__dict__.update(state)
    return exc


def _suggest(close: Sequence[str], listing: str) -> str:
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + f"? ({listing})"
    return listing


class UsageError(M3leoError):
    exit_code = 2


class DtypeRangeError(UsageError):
    default_hint = "use a float type (--dtype float32 or float16), or leave --dtype out"


class TooLargeError(UsageError):
    default_hint = "lower --resample or --workers"


class ConfigError(M3leoError):
    default_hint = "check the config file (`m3leo config path`) and M3LEO_* variables"


class ConfigNotFoundError(ConfigError):  # M3LEO_CONFIG names no file: never "no settings"
    exit_code = 2
    default_hint = "fix the path in M3LEO_CONFIG, or set M3LEO_CONFIG=/dev/null for no file"


# ----------------------------------------------------------------------------- selection


class SelectionError(M3leoError):
    """A selection flag the user typed is wrong: a usage mistake (exit 2)."""

    exit_code = 2


class UnknownRegionError(SelectionError):
    def __init__(self, name: str, close: Sequence[str] = ()) -> None:
        self.name = name
        super().__init__(
            f"unknown region {name!r}",
            _suggest(
                close,
                "`m3leo regions` lists them: china, conus, europe, middleeast, pakin, southamerica",
            ),
        )


class UnknownEditionError(SelectionError):
    def __init__(self, name: str, choices: Sequence[str] = ()) -> None:
        self.name = name
        super().__init__(f"unknown edition {name!r}", "use --edition " + " or ".join(choices))


class UnknownModalityError(SelectionError):
    def __init__(self, name: str, close: Sequence[str] = ()) -> None:
        self.name = name
        super().__init__(
            f"unknown modality {name!r}",
            _suggest(close, "`m3leo modalities` lists names and aliases"),
        )


class UnknownBandError(SelectionError):
    def __init__(self, name: str, valid: Sequence[str]) -> None:
        self.name = name
        shown = ", ".join(valid[:20]) + (" ..." if len(valid) > 20 else "")
        super().__init__(f"unknown band {name!r}", f"valid bands: {shown}")


class UnknownFormatError(SelectionError):
    def __init__(self, name: str, valid: Sequence[str]) -> None:
        super().__init__(f"unknown format {name!r}", "known formats: " + ", ".join(valid))


class BadBBoxError(SelectionError):
    default_hint = "give --bbox as W,S,E,N in degrees, e.g. --bbox 5.0,45.0,6.5,46.0"


class BadTileIdError(SelectionError):
    default_hint = "tile ids are 13 lowercase hex characters, e.g. 020d259a89240"


class EmptyInputError(SelectionError):
    """An empty --tiles or --tiles-file: refused, never read as "every tile"."""

    default_hint = "give at least one tile id, or leave the flag out to mean every tile"


class EmptySelectionError(SelectionError):
    """A valid selection that matches nothing here: a runtime outcome (exit 1)."""

    exit_code = 1
    default_hint = "widen the selection; `m3leo stats` shows what exists"


# ----------------------------------------------------------------------------- manifest


class ManifestError(M3leoError):
    pass


class ManifestNotFoundError(ManifestError):
    default_hint = "run `m3leo catalog refresh` first (it needs the network or a mirror)"


class ManifestCorruptError(ManifestError):
    default_hint = "run `m3leo catalog refresh` to rebuild it"


class RevisionMismatchError(ManifestError):
    default_hint = "run `m3leo catalog refresh --revision <rev>` first"


# ----------------------------------------------------------------------------- hub


class HubError(M3leoError):
    def __init__(
        self, message: str, hint: str | None = None, *, url: str = "", status: int | None = None
    ) -> None:
        super().__init__(message, hint)
        self.url = url
        self.status = status


class RemoteNotFoundError(HubError):
    default_hint = "check the region, edition and --revision; `m3leo regions` lists them"


class AuthError(HubError):
    default_hint = "use a token that can read the repo: --token, HF_TOKEN or `hf auth login`"


class RateLimitedError(HubError):
    default_hint = "the Hub is rate-limiting this address: wait, set HF_TOKEN, or lower --workers"


class ServerError(HubError):
    default_hint = "the server failed repeatedly; try again later (downloads resume)"


class HubProtocolError(HubError):
    default_hint = "HF_ENDPOINT may not point at a Hugging Face Hub or mirror"


class HubConnectionError(HubError):
    default_hint = "check the network and HF_ENDPOINT; set HF_HUB_OFFLINE=1 to work from the store"


ALLOW_BOTH = (
    "allow both the Hub (huggingface.co) and its content hosts (cdn-lfs.hf.co, "
    "cas-bridge.xethub.hf.co, *.hf.co) through the firewall or proxy (HTTPS_PROXY, NO_PROXY)"
)


class ContentHostUnreachableError(HubConnectionError):
    default_hint = ALLOW_BOTH


class ContentHostDeniedError(HubError):
    default_hint = ALLOW_BOTH + "; re-run to get fresh links (downloads resume)"


class OfflineError(HubError):
    default_hint = "unset HF_HUB_OFFLINE to reach the Hub, or work on what is already cached"


# ----------------------------------------------------------------------------- store


class StoreError(M3leoError):
    pass


class UnsafePathError(StoreError):
    default_hint = "the listing names a path outside the store; it was refused (report it)"


class StoreLockedError(StoreError):
    default_hint = "another m3leo run is writing this store; wait for it or use --wait"


class InsufficientSpaceError(StoreError):
    default_hint = "free space, choose another --data-dir, or pass --no-space-check"


class DiskFullError(StoreError):
    default_hint = "free space and re-run: finished files are kept and partial ones resume"


class OutputExistsError(StoreError):
    default_hint = "choose an empty --out folder or pass --overwrite"


# ----------------------------------------------------------------------------- transfer


class TransferError(M3leoError):
    pass


class ChecksumMismatchError(TransferError):
    default_hint = "the file was re-fetched and still differs; run `m3leo verify --repair` later"


class SizeMismatchError(TransferError):
    default_hint = "the server sent a different size than the manifest says; re-run to retry"


class DownloadFailedError(TransferError):
    default_hint = "re-run the same command: finished files are kept and partial ones resume"


class ShardError(M3leoError):
    default_hint = "re-run to re-fetch the shard; `m3leo verify --repair` checks what was unpacked"


class ServeError(M3leoError):
    default_hint = "see `m3leo serve --help`"


# ----------------------------------------------------------------------------- tiles


class DaskSchedulerError(M3leoError):
    def __init__(self, address: str, reason: str) -> None:
        super().__init__(
            f"cannot start the Dask engine on {address}: {reason.splitlines()[0][:200]}",
            "check --scheduler (or M3LEO_DASK_SCHEDULER) and that the scheduler is running, "
            "or use --engine local",
        )


class TileError(M3leoError):
    pass


class TileNotFoundError(TileError):
    default_hint = "`m3leo stats` and `m3leo info` show which tiles exist"


class TileNotLocalError(TileError):
    default_hint = "download it first with `m3leo download --tiles <id>`"


class CorruptTileError(TileError):
    default_hint = "run `m3leo verify --repair` to re-download it"


class StatsNotFoundError(TileError):
    default_hint = "compute them first with `m3leo stats --bands` (same --edition and --modality)"


class StatsMismatchError(TileError):  # saved statistics of another selection
    exit_code = 2
    default_hint = "recompute them: m3leo stats --bands (same --edition, --region, --split train)"


# ----------------------------------------------------------------------------- your own area


class AoiError(M3leoError):
    default_hint = "see docs/aoi.md and `m3leo grid --help`"


class BadAoiError(AoiError):
    default_hint = "pass a polygon in lon/lat degrees: --aoi FILE.wkt|FILE.geojson|WKT or --bbox"


class IngestError(AoiError):
    default_hint = "see `m3leo ingest --help`"


class EarthEngineError(AoiError):
    default_hint = "see `m3leo gee --help`"


# ----------------------------------------------------------------------------- training


class TrainError(M3leoError):
    pass


class UnknownExperimentError(TrainError):
    exit_code = 2

    def __init__(self, name: str, valid: Sequence[str]) -> None:
        import difflib

        self.name = name
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        listing = "experiments: " + ", ".join(valid)
        super().__init__(
            f"unknown experiment {name!r}",
            _suggest([f"experiment={c}" for c in close], listing),
        )


class TrainConfigError(TrainError):
    exit_code = 2
    default_hint = "see docs/train.md; `m3leo train --help` shows how overrides are written"


class NoLabelsError(TrainError):
    default_hint = "choose another split or region (`m3leo stats --modality <target>` counts them)"


class EmptySplitError(TrainError):
    default_hint = "`m3leo stats` shows how many tiles each split holds; widen data.regions"


class DeviceUnavailableError(TrainError):
    exit_code = 2
    default_hint = "train on the CPU: trainer.accelerator=cpu"


class StreamError(TrainError):
    """Streaming samples from the Hub's shards (``data.source=hub``) cannot start or go on."""

    default_hint = "see docs/train.md (streaming); data.source=store reads downloaded tiles"


class RunNotFoundError(TrainError):
    default_hint = "give the folder `m3leo train` wrote (it holds config.yaml and checkpoints/)"


class MissingDependencyError(M3leoError):
    exit_code = 2  # nothing was done; the hint's install line is the fix (as for a usage error)

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"this needs the optional package {package!r}", install_hint(extra))


class FormatDependencyError(MissingDependencyError):
    """``export --format F`` whose library is not installed: refused before anything is written."""

    exit_code = 2

    def __init__(self, fmt: str, package: str, extra: str) -> None:
        super().__init__(package, extra)
        self.message = f"--format {fmt} needs the optional package {package!r} (the {extra} extra)"


def install_hint(extra: str) -> str:
    """``pip install '.[extra]'`` in a source checkout (pyproject.toml beside the package, as
    in an editable install), else the published name."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        return f"pip install '.[{extra}]' (in {root})"
    return f"pip install 'm3leo-cli[{extra}]' (from a clone: pip install '.[{extra}]' in it)"
