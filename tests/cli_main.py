"""Run ``plastispoof ...`` through ``cli.main`` (bad input: one line on stderr, exit 2) inside a test."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from plastispoof.cli import main


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_main(monkeypatch, capsys, *args: str) -> Ran:
    monkeypatch.setattr(sys, "argv", ["plastispoof", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else 1
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)
