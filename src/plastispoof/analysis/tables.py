"""What every report's table shares: mean ± std over seeds, and rows of cells as Markdown and as CSV text."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation, ignoring ``None`` (not measured); std is 0 for one value.

    >>> mean_std([1.0, None, 3.0]), mean_std([2.0]), mean_std([None])
    ((2.0, 1.4142135623730951), (2.0, 0.0), (None, None))
    """
    present = [value for value in values if value is not None]
    if not present:
        return None, None
    return statistics.fmean(present), (statistics.stdev(present) if len(present) > 1 else 0.0)


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of already formatted cells.

    >>> print(markdown_table(["a", "b"], [["1", "2"]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The rows as CSV under a header line (``csv`` module quoting, ``\\r\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()
