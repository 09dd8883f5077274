"""The project's one error type for bad input.

Everything a user can get wrong (a corrupt audio file, a protocol line of the wrong shape, a config typo, a
checkpoint from another model) raises :class:`InputError` with one sentence that says what and where. The CLI
turns it into that line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: one clear sentence, no traceback at the CLI."""


def summarise(problems: list[str], what: str, limit: int = 3) -> str:
    """One line naming how many ``problems`` there are and the first few.

    >>> summarise(["a.flac", "b.flac", "c.flac", "d.flac"], "missing audio files")
    '4 missing audio files, e.g. a.flac; b.flac; c.flac'
    """
    shown = "; ".join(problems[:limit])
    return f"{len(problems)} {what}, e.g. {shown}" if len(problems) > 1 else f"1 {what}: {shown}"
