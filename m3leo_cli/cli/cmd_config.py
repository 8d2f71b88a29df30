"""`m3leo config show|path`."""

from __future__ import annotations

from dataclasses import asdict

import typer

from .app import config_app
from .options import DataDir, JsonOut, settings_from
from .render import out_console, print_json


@config_app.command("show")
def config_show(data_dir: DataDir = None, json_out: JsonOut = False) -> None:
    """Print the resolved settings and where each comes from (the token is never shown).

    Example: m3leo config show --json
    """
    from ..hub.netenv import redact_proxy

    s = settings_from(data_dir=data_dir)
    data = asdict(s)
    data.pop("sources")
    data["token"] = "set" if s.token else None  # where it came from is shown, never the token
    for key in ("http_proxy", "https_proxy", "all_proxy"):
        data[key] = redact_proxy(data[key])
    data["hub_plan"] = s.hub_plan
    data["request_budget"] = s.request_budget
    data["budgets"] = s.budgets
    if json_out:
        print_json({"settings": data, "sources": {k: s.source_of(k) for k in data}})
        return
    con = out_console()
    for key, value in data.items():
        derived = ("hub_plan", "request_budget", "budgets")
        source = "derived" if key in derived else s.source_of(key)
        con.print(f"{key} = {value}  ({source})", markup=False)


@config_app.command("path")
def config_path() -> None:
    """Print where the TOML config file is read from.

    Example: m3leo config path
    """
    typer.echo(str(settings_from().config_path))
