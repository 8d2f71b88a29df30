"""README's test command is what CI runs, and its constraints pin every extra it installs
(issue 27: the suite says how long it takes, lists skips, and pip resolves in seconds)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _readme_command() -> str:
    lines = [line for line in (ROOT / "README.md").read_text().splitlines()
             if ".venv/bin/pytest" in line]  # fmt: skip
    assert len(lines) == 1, lines
    return lines[0].strip()


def test_ci_runs_exactly_readmes_test_command() -> None:
    command = _readme_command()
    run = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in run
    assert ".venv/bin/pytest -rs" in command  # skips are listed with their reason
    assert "pip install -q torch==2.13.0 &&" in command  # torch first: the CPU build stays
    assert "-c .ci/constraints.txt -e '.[dev,train]'" in command


def test_readme_says_how_long_the_suite_takes() -> None:
    text = (ROOT / "README.md").read_text()
    assert re.search(r"2-core machine this takes about [\d-]+ minutes, install included", text)


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not a pin: {line}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_constraints_pin_every_requirement_of_the_installed_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins()
    assert "torch" not in pins and "m3leo-cli" not in pins  # installed by version / the checkout
    extras = project["optional-dependencies"]
    for text in [*project["dependencies"], *extras["dev"], *extras["train"]]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pins, f"{req.name} is not pinned: regenerate .ci/constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}=={pins[name]} does not satisfy {req.specifier}"
        )
