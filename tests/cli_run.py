"""The command line run through its real entry point (:func:`plastispoof.cli.main`) inside the test process."""

from __future__ import annotations

import sys

from plastispoof.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``plastispoof ARGS`` through :func:`plastispoof.cli.main`: (exit code, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["plastispoof", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
