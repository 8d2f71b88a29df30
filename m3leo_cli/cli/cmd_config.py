"""`m3leo config show|path`."""

from __future__ import annotations

from dataclasses import asdict

import typer

from .app import config_app
from .options import DataDir, JsonOut, settings_from
from .render import out_console, print_json


@config_app.command("show")
def config_show(data_dir: DataDir = None, json_out: JsonOut = False) -> None:
    """Print the resolved settings (the token is never shown).

    Example: m3leo config show --json
    """
    s = settings_from(data_dir=data_dir)
    data = asdict(s)
    data["token"] = "set" if s.token else None
    data["request_budget"] = s.request_budget
    if json_out:
        print_json(data)
        return
    con = out_console()
    for key, value in data.items():
        con.print(f"{key} = {value}", markup=False)


@config_app.command("path")
def config_path() -> None:
    """Print where the TOML config file is read from.

    Example: m3leo config path
    """
    typer.echo(str(settings_from().config_path))
