"""The docs stay true: the CLI reference is regenerated from --help and must match."""

from __future__ import annotations

from pathlib import Path

from m3leo_cli.cli.docgen import render

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current() -> None:
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == render(), (
        "docs/cli.md is stale: run `python -m m3leo_cli.cli.docgen > docs/cli.md`"
    )


def test_every_command_has_an_example() -> None:
    text = render()
    sections = text.split("\n#")[1:]
    for section in sections:
        title = section.splitlines()[0]
        if "COMMAND [ARGS]" in section:  # a group: its subcommands carry the examples
            continue
        assert "Example:" in section, f"{title} has no example in its help"
