"""The house: subpackages named for concepts, layers that only point down, no import cycles.

The layers themselves are an import-linter contract in pyproject.toml; these tests run it and
check what a contract cannot say (cycles between any two modules, loose modules, sizes).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "m3leo_cli"
FOUNDATION = {"spec", "errors", "config", "selection", "progress", "checksum", "version"}
TOP_LEVEL_OK = FOUNDATION | {"__init__", "__main__", "demo"}
MAX_LINES = 420  # "no module over ~400 lines"


def _lint_imports() -> str:
    exe = Path(sys.executable).parent / "lint-imports"
    if exe.exists():
        return str(exe)
    found = shutil.which("lint-imports")
    if not found:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    return found


def test_layers_contract_holds() -> None:
    out = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 1 kept, 0 broken." in out.stdout


def _graph() -> dict[str, set[str]]:
    import grimp

    graph = grimp.build_graph("m3leo_cli", cache_dir=None)
    return {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules() -> None:
    """Any import counts: module level, inside functions and under TYPE_CHECKING."""
    assert _cycles(_graph()) == []


def test_only_the_foundation_is_loose() -> None:
    loose = {p.stem for p in PKG.glob("*.py")}
    assert loose <= TOP_LEVEL_OK, sorted(loose - TOP_LEVEL_OK)


def test_every_subpackage_says_what_lives_there() -> None:
    for init in sorted(PKG.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} needs a docstring"


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}


def test_design_doc_names_every_module() -> None:
    """docs/design.md's module table lists each subpackage and each of its modules."""
    import re

    doc = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    rows: dict[str, set[str]] = {}
    for line in doc.splitlines():
        m = re.match(r"\| (foundation|`(\w+)/`) \| (.*?) \|", line)
        if m:
            rows[m.group(2) or "foundation"] = set(re.findall(r"`([\w/]+)`", m.group(3)))
    missing = {}
    for pkg in sorted(p for p in PKG.iterdir() if (p / "__init__.py").is_file()):
        names = rows.get(pkg.name, rows["foundation"] if pkg.name == "spec" else None)
        mods = {q.stem for q in pkg.glob("*.py") if q.stem != "__init__"}
        if names is None:
            missing[pkg.name] = sorted(mods)
        elif lost := sorted(m for m in mods if m not in names):
            missing[pkg.name] = lost
    loose = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__", "demo"}
    missing.update(
        {"foundation": sorted(loose - rows["foundation"])} if loose - rows["foundation"] else {}
    )
    assert missing == {}


def test_the_exception_tree_in_design_md_names_every_error() -> None:
    """errors.py's classes and docs/design.md's drawing of the tree stay in step."""
    import m3leo_cli.errors as errors

    doc = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    tree = doc.split("## The exception tree", 1)[1].split("```")[1]
    names = {
        name
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, errors.M3leoError)
    }
    missing = sorted(n for n in names if n not in tree)
    assert missing == [], f"draw these in docs/design.md's exception tree: {missing}"
