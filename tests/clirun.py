"""Run the real `m3leo` entry point in-process and capture what a user would see."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from m3leo_cli.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    code = main(list(args))
    cap = capsys.readouterr()
    return Result(code, cap.out, cap.err)
