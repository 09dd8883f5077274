"""Score files in and out: ``utt_id score`` files, the organisers' ASV score files, and one score file measured
against a protocol (the ``plastispoof metrics`` verb). The metrics themselves are pure functions in
:mod:`plastispoof.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plastispoof.data.protocols import read_protocol_file
from plastispoof.errors import InputError, summarise
from plastispoof.fileio import atomic_write_text
from plastispoof.metrics import AsvScores, check_tdcf_form, check_ties, compute_report


def write_scores(path: str | Path, scores: dict[str, float]) -> Path:
    """The score file: one ``utt_id score`` line per utterance, in the given order."""
    return atomic_write_text(path, "".join(f"{utt} {score:.9g}\n" for utt, score in scores.items()))


def _read_lines(path: Path, what: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{what} {path} could not be read as UTF-8 text: {err}") from None


def _parse_score(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_scores(path: Path | str) -> dict[str, float]:
    """Read a CM score file into ``{utt_id: score}`` (file order).

    Accepted lines (whitespace-separated, blank lines skipped): ``utt_id score`` (ours),
    ``utt_id attack key score`` (ASVspoof 2019 / AASIST style), and the ASVspoof 5 TSV ``filename<TAB>cm-score``
    whose first line is a header naming a score column. NaN or infinite scores, duplicate ids and lines of any
    other shape raise :class:`InputError` with their line numbers.
    """
    path = Path(path)
    scores: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    problems: list[str] = []
    first_content = True
    for number, line in enumerate(_read_lines(path, "score file"), start=1):
        fields = line.split()
        if not fields:
            continue
        is_header = first_content and "score" in fields[-1].lower() and _parse_score(fields[-1]) is None
        first_content = False
        if is_header:
            continue
        if len(fields) not in (2, 4):
            problems.append(f"line {number} has {len(fields)} fields, not 'utt_id score' or "
                            "'utt_id attack key score'")
            continue
        utt_id, value = fields[0], _parse_score(fields[-1])
        if value is None:
            problems.append(f"line {number} score {fields[-1]!r} of {utt_id} is not a finite number")
        elif utt_id in first_seen:
            problems.append(f"line {number} repeats {utt_id} of line {first_seen[utt_id]}")
        else:
            scores[utt_id] = value
            first_seen[utt_id] = number
    if problems:
        raise InputError(f"score file {path}: {summarise(problems, 'bad line(s)')}")
    if not scores:
        raise InputError(f"score file {path} holds no scores")
    return scores


ASV_KEYS = ("target", "nontarget", "spoof")


def read_asv_scores(path: Path | str) -> AsvScores:
    """Read an organisers' ASV score file, ``speaker key score`` per line, key target | nontarget | spoof.

    The key is found by value (any column before the score), the score is the last column.
    """
    path = Path(path)
    groups: dict[str, list[float]] = {key: [] for key in ASV_KEYS}
    problems: list[str] = []
    for number, line in enumerate(_read_lines(path, "ASV score file"), start=1):
        fields = line.split()
        if not fields:
            continue
        keys = [field for field in fields[:-1] if field in groups]
        value = _parse_score(fields[-1])
        if len(fields) < 2 or not keys:
            problems.append(f"line {number} has no key ({' | '.join(ASV_KEYS)}) before its score")
        elif value is None:
            problems.append(f"line {number} score {fields[-1]!r} is not a finite number")
        else:
            groups[keys[0]].append(value)
    if problems:
        raise InputError(f"ASV score file {path}: {summarise(problems, 'bad line(s)')}")
    absent = [key for key in ASV_KEYS if not groups[key]]
    if absent:
        raise InputError(f"ASV score file {path} has no {' or '.join(absent)} trials; t-DCF needs all of "
                         f"{', '.join(ASV_KEYS)}")
    return AsvScores(**{key: np.asarray(values) for key, values in groups.items()})


def score_protocol(scores_path: Path | str, protocol_path: Path | str, *, format: str = "auto",
                   asv_scores: Path | str | None = None, tdcf_form: str = "2019",
                   breakdown: Sequence[str] = ("attack",), ties: str = "grouped", llr: bool = False,
                   bootstrap: int = 1000) -> dict[str, Any]:
    """Read a score file and a protocol (any format :func:`read_protocol_file` knows) and :func:`compute_report`.

    ``asv_scores``: the organisers' ASV score file for t-DCF; without it the pooled fallback rates are used.
    ``ties``: ``grouped`` (default; equal scores are one threshold) or ``official`` (the official scorers'
    per-trial sweep, for comparing with published numbers); see the module notes.
    """
    tdcf_form, ties = check_tdcf_form(tdcf_form), check_ties(ties)
    trials = read_protocol_file(Path(protocol_path), format)
    scores = read_scores(scores_path)
    asv = read_asv_scores(asv_scores) if asv_scores is not None else None
    try:
        return compute_report(trials, scores, asv=asv, tdcf_form=tdcf_form, breakdown=breakdown, ties=ties,
                              llr=llr, bootstrap=bootstrap)
    except InputError as err:
        raise InputError(f"scores {scores_path} against protocol {protocol_path}: {err}") from None
