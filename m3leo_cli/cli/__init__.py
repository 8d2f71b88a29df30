"""The `m3leo` command: parse, call one library function, render. No business logic here."""

from __future__ import annotations

import sys
import traceback

import typer

from ..errors import M3leoError
from .app import app
from .render import err_console

__all__ = ["app", "main"]


def _load_commands(argv: list[str] | None = None) -> None:
    """Import the command modules so they register themselves on ``app``.

    With ``argv`` naming a command, only that command's module is imported: typing
    ``m3leo download`` does not pay for importing and converting the other sixteen (about
    0.15 s of start-up). Anything else (no command, an option first, ``--help``, an unknown
    name) loads them all, so help and "no such command" list every command.
    """
    from importlib import import_module

    first = next(iter(argv or []), "")
    names = [COMMANDS[first]] if first in COMMANDS else COMMAND_MODULES
    for name in names:
        import_module(f"{__name__}.{name}")
    if names is COMMAND_MODULES:  # help lists them in this order, whichever loaded first
        rank = {m: i for i, m in enumerate(COMMAND_MODULES)}
        app.registered_commands.sort(
            key=lambda c: rank.get(getattr(c.callback, "__module__", "").rpartition(".")[2], 0)
        )


# Each top-level command name and the module that registers it on `app` when imported
# (tests/test_cli_main.py checks the table against what registers).
COMMANDS: dict[str, str] = {
    "demo": "cmd_demo",
    "catalog": "cmd_catalog",
    "regions": "cmd_catalog",
    "modalities": "cmd_catalog",
    "stats": "cmd_stats",
    "tiles": "cmd_tiles",
    "download": "cmd_download",
    "verify": "cmd_verify",
    "clean": "cmd_verify",
    "unpack": "cmd_unpack",
    "info": "cmd_info",
    "show": "cmd_show",
    "map": "cmd_show",
    "export": "cmd_export",
    "serve": "cmd_serve",
    "synth": "cmd_synth",
    "config": "cmd_config",
    "grid": "cmd_grid",
    "ingest": "cmd_ingest",
    "gee": "cmd_gee",
    "train": "cmd_train",
    "evaluate": "cmd_train",
}
# The command modules, in the order `m3leo --help` lists their commands.
COMMAND_MODULES: list[str] = list(dict.fromkeys(COMMANDS.values()))


def _debug() -> bool:
    """M3LEO_DEBUG, read through the settings like every other knob."""
    from ..config import load_settings

    try:
        return load_settings().debug
    except M3leoError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every M3leoError into `Error:` + `hint:` on stderr."""
    args = sys.argv[1:] if argv is None else argv
    _load_commands(args)
    try:
        rv = app(args=args, prog_name="m3leo", standalone_mode=False)
    except M3leoError as exc:
        if _debug():
            traceback.print_exc()
        err_console().print(f"[bold red]Error:[/] {exc.message}", markup=True, highlight=False)
        if exc.hint:
            hint = _with_data_dir(exc.hint, args)
            err_console().print(f"hint: {hint}", markup=False, highlight=False)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted()
    except OSError as exc:  # the filesystem said no: a missing or read-only folder, a full disk
        if _debug():
            traceback.print_exc()
        _filesystem_error(exc)
        return 1
    except NoArgsIsHelpError as exc:  # `m3leo`, `m3leo catalog`: their help, not an error
        sys.stdout.write(exc.ctx.get_help() + "\n")
        return 0
    except TyperUsageError as exc:
        _usage_error(exc)
        return exc.exit_code
    if rv == 130:  # typer turns Ctrl-C into a quiet Exit(130); no command returns 130 itself
        return _interrupted()
    return int(rv or 0) if isinstance(rv, int) else 0


def _with_data_dir(hint: str, args: list[str]) -> str:
    """A hint that names an m3leo command keeps the --data-dir this command was given: run as
    printed, it would otherwise work on the default store, not the one the user named."""
    given = None
    for i, arg in enumerate(args):
        if arg == "--data-dir" and i + 1 < len(args):
            given = args[i + 1]
        elif arg.startswith("--data-dir="):
            given = arg.split("=", 1)[1]
    if given is None or "m3leo " not in hint or "--data-dir" in hint:
        return hint
    return f"{hint} (with --data-dir {given}, as in this command)"


def _interrupted() -> int:
    err_console().print("[bold red]Error:[/] interrupted", markup=True, highlight=False)
    err_console().print(
        "hint: re-run the same command: finished files are kept and partial ones resume",
        markup=False,
        highlight=False,
    )
    return 130


def _filesystem_error(exc: OSError) -> None:
    import errno

    message = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free space there (or raise the quota), or point --out / --data-dir elsewhere"
    else:
        hint = "check that the folder exists and is writable (--out, --data-dir or M3LEO_DATA_DIR)"
    err_console().print(f"[bold red]Error:[/] {message}", markup=True, highlight=False)
    err_console().print(f"hint: {hint}", markup=False, highlight=False)


def _usage_error(exc: TyperUsageError) -> None:
    """A bad flag gets the same one-line ``Error:`` + ``hint:`` as every other error."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "m3leo"
    message = " ".join(exc.format_message().split())
    err_console().print(f"[bold red]Error:[/] {message}", markup=True, highlight=False)
    err_console().print(f"hint: see `{command} --help`", markup=False, highlight=False)


# typer vendors click; in non-standalone mode its usage errors are raised as this class
from typer._click.exceptions import ClickException as TyperUsageError  # noqa: E402
from typer._click.exceptions import NoArgsIsHelpError  # noqa: E402
