"""Every hint the CLI can print names flags and commands that exist (issue 12 item 8).

The hints are read from the source: every string (and f-string) literal of the package that
is not a docstring. Each ``m3leo <command> --flag ...`` in them must name a real command and
real options of that command; each other ``--flag`` must exist on the commands of the module
that prints it (the library's on some command). The store lock's hint names ``--wait``, so
every command that takes the lock has it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer

import m3leo_cli
from m3leo_cli.cli import _load_commands, app

PACKAGE = Path(m3leo_cli.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND = re.compile(r"\bm3leo ((?:[a-z][a-z-]*)(?: [^`'\";)]*)?)")


def _tree() -> dict[str, set[str]]:
    """Command path ("catalog refresh") -> its option names."""
    _load_commands()
    root = typer.main.get_command(app)
    out: dict[str, set[str]] = {}

    def walk(cmd: typer.core.TyperCommand, path: str) -> None:
        out[path] = {"--help"} | {
            o for p in cmd.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]
        }
        for name, sub in getattr(cmd, "commands", {}).items():  # a group
            walk(sub, f"{path} {name}".strip())

    walk(root, "")
    return out


def _literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is not a docstring; f-string holes -> X."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
            out.append((node.lineno, text))
            for v in node.values:
                docs.add(id(v))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docs:
                out.append((node.lineno, node.value))
    return [(n, t) for n, t in out if id(t) not in docs]


def _module_commands(path: Path, tree: dict[str, set[str]]) -> set[str]:
    """Command paths a cli module registers (by the names in its @...command("x") lines)."""
    text = path.read_text(encoding="utf-8")
    names = set(re.findall(r'\.command\(\s*"([a-z-]+)"', text))
    return {p for p in tree if p and p.split()[-1] in names}


def _cases() -> list[tuple[str, int, str]]:
    return [
        (str(p.relative_to(PACKAGE)), n, t)
        for p in sorted(PACKAGE.rglob("*.py"))
        if "testing" not in p.parts
        for n, t in _literals(p)
        if "--" in t or "m3leo " in t
    ]


def test_every_named_command_and_flag_exists() -> None:
    tree = _tree()
    every = set().union(*tree.values())
    bad: list[str] = []
    for rel, line, text in _cases():
        where = f"{rel}:{line}: {text!r}"
        named: set[str] = set()
        for m in COMMAND.finditer(text):
            words = m.group(1).split()
            path, i = "", 0
            while i < len(words) and f"{path} {words[i]}".strip() in tree:
                path, i = f"{path} {words[i]}".strip(), i + 1
            if not path:  # prose ("this m3leo reads ..."), unless quoted as a command
                if f"`m3leo {words[0]}" in text and words[0] != "X":
                    bad.append(f"{where}: no command `m3leo {words[0]}`")
                continue
            for flag in FLAG.findall(" ".join(words[i:])):
                named.add(flag)
                if flag not in tree[path]:
                    bad.append(f"{where}: `m3leo {path}` has no {flag}")
        own: set[str] = set()
        if rel.startswith("cli/cmd_"):
            for p in _module_commands(PACKAGE / rel, tree):
                own |= tree[p]
        for flag in set(FLAG.findall(text)) - named:
            if flag not in (own or every):
                bad.append(f"{where}: no command here has {flag}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("command", ["download", "verify", "clean", "unpack"])
def test_commands_that_take_the_store_lock_accept_wait(command: str) -> None:
    """StoreLockedError's hint says "pass --wait": `clean` used to have none."""
    from m3leo_cli.errors import StoreLockedError

    assert "--wait" in StoreLockedError.default_hint
    assert "--wait" in _tree()[command]


def test_a_hint_that_names_a_command_keeps_the_data_dir_the_user_gave(capsys, tmp_path) -> None:
    """Walk-through finding: run as printed, a hint without --data-dir works on the default
    store, not the one the user named (it downloaded 22 files into ~/.local/share)."""
    from clirun import run

    store = tmp_path / "store16"
    (store / "manifest").mkdir(parents=True)
    res = run(capsys, "info", "0123456789abc", "--edition", "miniset", "--region", "europe",
              "--data-dir", str(store))  # fmt: skip
    assert res.code != 0
    hint = next(line for line in res.err.splitlines() if line.startswith("hint: "))
    assert "m3leo catalog refresh" in hint and f"--data-dir {store}" in hint
