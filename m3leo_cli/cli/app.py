"""The Typer application object every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="m3leo",
    help="Get the M3LEO Earth-observation dataset from the Hugging Face Hub onto this machine "
    "and into a training loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
catalog_app = typer.Typer(
    help="Build and inspect the local manifest of what exists remotely.", no_args_is_help=True
)
app.add_typer(catalog_app, name="catalog")
config_app = typer.Typer(
    help="Show the resolved settings and where they come from.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        from ..version import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Get the M3LEO Earth-observation dataset onto this machine and into a training loop."""
