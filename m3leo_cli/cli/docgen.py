"""Generate docs/cli.md from the commands' own --help (a test fails when the file is stale).

Regenerate with: python -m m3leo_cli.cli.docgen > docs/cli.md
"""

from __future__ import annotations

from typing import Any

import typer

HEADER = """# CLI reference

Generated from `m3leo --help` by `python -m m3leo_cli.cli.docgen > docs/cli.md`; do not edit by
hand (`tests/test_docs.py` fails when this file is stale).
"""


def _walk(cmd: Any, path: list[str], parent: Any, out: list[str]) -> None:
    ctx = cmd.make_context(path[-1], [], parent=parent, resilient_parsing=True)
    ctx.terminal_width = 100
    ctx.max_content_width = 100
    level = "#" * min(len(path) + 1, 4)
    out.append(f"\n{level} `{' '.join(path)}`\n\n```text\n{cmd.get_help(ctx).rstrip()}\n```\n")
    sub = getattr(cmd, "commands", None)
    if sub:
        for name in sorted(sub):
            if getattr(sub[name], "hidden", False):
                continue
            _walk(sub[name], path + [name], ctx, out)


def render() -> str:
    """The whole CLI reference as Markdown."""
    from . import _load_commands, app

    _load_commands()
    root = typer.main.get_command(app)
    out = [HEADER]
    _walk(root, ["m3leo"], None, out)
    return "".join(out)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
