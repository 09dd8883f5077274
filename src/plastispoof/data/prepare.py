"""Check a downloaded corpus before hours of training start, and write its manifest (``plastispoof prepare``).

For one corpus reader (:mod:`plastispoof.data.protocols`) it reads every subset's protocol, compares the row
counts with the corpus' published counts (:data:`PUBLISHED_COUNTS`; corpora not listed are checked against their
own keys only), finds the files the protocols name but the disk lacks (an :class:`InputError` before any long
work) and the audio files on disk no protocol names, and with ``check_audio`` decodes every file in a process
pool, recording sample rates and durations and flagging silent and corrupt files. The result prints as a report
(counts, the label x attack table, the audio summary) and becomes a Parquet manifest
(:mod:`plastispoof.data.manifest`) that ``train``, ``evaluate``, ``calibrate`` and ``score`` read instead of
listing the corpus again.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from plastispoof.audio import SILENCE_LEVEL
from plastispoof.data.manifest import FileStat, write_manifest
from plastispoof.data.protocols import AUDIO_SUFFIXES, read_dataset
from plastispoof.data.trials import BONAFIDE, Trial
from plastispoof.errors import InputError, summarise
from plastispoof.registry import DATASETS

# Rows per subset of the published corpora (their protocol files). A protocol with another count is a partial
# or damaged download; pass ``expected`` (``prepare --expect``) for a deliberately partial copy.
PUBLISHED_COUNTS: dict[str, dict[str, int]] = {
    "asv19-la": {"train": 25_380, "dev": 24_844, "eval": 71_237},
    "asv19-pa": {"train": 54_000, "dev": 29_700, "eval": 134_730},
    "in-the-wild": {"eval": 31_779},
}
# The subsets prepare reads by default; "all" = the reader's every row (subsets then come from a column).
CORPUS_SUBSETS: dict[str, tuple[str, ...]] = {
    "asv19-la": ("train", "dev", "eval"), "asv19-pa": ("train", "dev", "eval"), "synthetic": ("train", "dev", "eval"),
    "asv21-la": ("all",), "asv21-df": ("all",), "asv5": ("train", "dev", "eval"), "in-the-wild": ("eval",),
    "for-original": ("training", "validation", "testing"), "for-norm": ("training", "validation", "testing"),
    "for-2sec": ("training", "validation", "testing"), "for-rerec": ("training", "validation", "testing"),
    "csv": ("all",),
}
EXAMPLES = 3


@dataclass
class AudioCheck:
    """What decoding one file found: its rate and duration, or why it cannot be used."""

    sample_rate: int | None = None
    duration: float | None = None
    silent: bool = False
    error: str | None = None


@dataclass
class CorpusCheck:
    """Everything :func:`prepare_corpus` found; :func:`format_check` prints it."""

    dataset: str
    root: Path
    trials: list[Trial]
    counts: dict[str, tuple[int, int | None]]  # subset -> (protocol rows, published rows or None)
    extra: list[Path]
    stats: dict[Path, FileStat]
    audio: dict[Path, AudioCheck] = field(default_factory=dict)
    manifest: Path | None = None
    dropped: int = 0
    seconds: float = 0.0
    shards: Path | None = None
    shard_index: dict[str, Any] | None = None

    @property
    def corrupt(self) -> list[Path]:
        return [path for path, check in self.audio.items() if check.error]

    @property
    def silent(self) -> list[Path]:
        return [path for path, check in self.audio.items() if check.silent]

    @property
    def unusable(self) -> list[Path]:
        """Files training could not read: corrupt, or digital silence (load_audio refuses both)."""
        return [path for path, check in self.audio.items() if check.error or check.silent]


def prepare_corpus(dataset: str, root: str | Path, *, subsets: list[str] | None = None,
                   expected: dict[str, int] | None = None, check_audio: bool = False, jobs: int | None = None,
                   out: str | Path | None = None, drop_unusable: bool = False, shards: str | Path | None = None,
                   shard_size: int = 1000, show_progress: bool = True) -> CorpusCheck:
    """Check ``dataset`` under ``root`` and (with ``out``) write its manifest; see the module notes.

    ``expected``: rows per subset to compare with instead of :data:`PUBLISHED_COUNTS`. Bad input (another
    corpus, a protocol count that differs, protocol rows for missing files) is an :class:`InputError` before
    any audio is decoded. With ``check_audio``, unusable files (corrupt, silent) keep the manifest from being
    written unless ``drop_unusable`` leaves them out of it. ``shards``: also write each subset as WebDataset
    shards of ``shard_size`` utterances there (:mod:`plastispoof.data.shards`).
    """
    started = time.perf_counter()
    if dataset == "manifest":
        raise InputError("prepare reads a corpus, not a manifest: name the corpus reader (e.g. asv19-la)")
    DATASETS.get_or_fail(dataset)
    root = Path(root)
    trials: list[Trial] = []
    for subset in subsets or CORPUS_SUBSETS.get(dataset, ("all",)):
        trials += read_dataset(dataset, root, subset, check_audio=False)
    counts = _check_counts(dataset, trials, PUBLISHED_COUNTS.get(dataset, {}) if expected is None else expected)
    listing = _list_folders({trial.path.parent for trial in trials})
    missing = [str(trial.path) for trial in trials if trial.path not in listing]
    if missing:
        raise InputError(summarise(missing, f"protocol row(s) of {dataset} under {root} name a missing file"))
    named = {trial.path for trial in trials}
    extra = sorted(path for path in listing if path not in named and path.suffix.lower() in AUDIO_SUFFIXES)
    check = CorpusCheck(dataset, root, trials, counts, extra, {path: listing[path] for path in named})
    if check_audio:
        check.audio = decode_all(sorted(named), jobs, show_progress)
        check.stats = {path: FileStat(stat.size, stat.mtime_ns, check.audio[path].duration,
                                      check.audio[path].sample_rate) for path, stat in check.stats.items()}
    unusable = set(check.unusable)
    if unusable and not drop_unusable and (out is not None or shards is not None):
        check.seconds = time.perf_counter() - started
        return check  # the caller reports them; no manifest or shards of files training cannot read
    kept = [trial for trial in trials if trial.path not in unusable]
    check.dropped = len(trials) - len(kept)
    if shards is not None:
        from plastispoof.data.shards import write_shards

        by_subset: dict[str, list[Trial]] = {}
        for trial in kept:
            by_subset.setdefault(trial.subset, []).append(trial)
        check.shards = Path(shards)
        check.shard_index = write_shards(by_subset, shards, dataset, per_shard=shard_size,
                                         show_progress=show_progress)
    if out is not None:
        check.manifest = write_manifest(out, kept, check.stats, {
            "dataset": dataset, "root": str(root.absolute()), "subsets": sorted({t.subset for t in kept}),
            "created": time.time(), "checked_audio": check_audio, "dropped": check.dropped})
    check.seconds = time.perf_counter() - started
    return check


def _check_counts(dataset: str, trials: list[Trial], expected: dict[str, int]) -> dict[str, tuple[int, int | None]]:
    found = Counter(trial.subset for trial in trials)
    counts = {subset: (found[subset], expected.get(subset)) for subset in found}  # reading order
    wrong = [f"{subset} has {n:,} rows, the published corpus {want:,}" for subset, (n, want) in counts.items()
             if want is not None and n != want]
    if wrong:
        raise InputError(f"{dataset} protocols do not match the published counts: {'; '.join(wrong)} (a partial "
                         "download? for a deliberately partial copy pass --expect SUBSET=N,...)")
    return counts


def _list_folders(folders: set[Path]) -> dict[Path, FileStat]:
    """Every file in ``folders`` (not recursive) with its size and modification time: one directory listing per
    folder instead of one lookup per protocol row."""
    files: dict[Path, FileStat] = {}
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_file():
                    stat = entry.stat()
                    files[folder / entry.name] = FileStat(stat.st_size, stat.st_mtime_ns)
            except OSError:
                continue
    return files


def probe_audio(path: str | Path) -> AudioCheck:
    """Decode ``path`` whole (in a worker process): its rate and duration, digital silence, or the error."""
    try:
        with sf.SoundFile(path) as audio:
            rate, peak, frames = audio.samplerate, 0.0, 0
            for block in audio.blocks(1 << 16, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    return AudioCheck(rate, None, error="NaN or infinite samples")
                peak = max(peak, float(np.abs(block).max(initial=0.0)))
                frames += len(block)
    except Exception as err:  # libsndfile's errors and truncated-file errors alike mean "corrupt"
        return AudioCheck(error=str(err).splitlines()[0] if str(err) else type(err).__name__)
    if frames == 0:
        return AudioCheck(rate, 0.0, error="no samples")
    return AudioCheck(rate, frames / rate, silent=peak < SILENCE_LEVEL)


def decode_all(paths: list[Path], jobs: int | None = None, show_progress: bool = True) -> dict[Path, AudioCheck]:
    """:func:`probe_audio` of every path in a pool of ``jobs`` processes (default: every core), with a bar."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    console = Console(stderr=True)
    progress = Progress(TextColumn("decoding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, transient=True,
                        disable=not (show_progress and console.is_terminal))
    results: dict[Path, AudioCheck] = {}
    with progress, ProcessPoolExecutor(jobs) as pool:
        task = progress.add_task("decode", total=len(paths))
        chunk = max(1, min(256, len(paths) // (jobs * 8) or 1))
        for path, check in zip(paths, pool.map(probe_audio, paths, chunksize=chunk)):
            results[path] = check
            progress.advance(task)
    return results


def label_attack_table(trials: list[Trial]) -> list[tuple[str, dict[str, int]]]:
    """``[(attack, {subset: count})]``: bona fide first (as ``bonafide``), then each attack in name order."""
    counts: Counter = Counter((BONAFIDE if t.label == BONAFIDE else t.attack, t.subset) for t in trials)
    attacks = sorted({attack for attack, _ in counts}, key=lambda a: (a != BONAFIDE, a))
    subsets = list(dict.fromkeys(t.subset for t in trials))
    return [(attack, {subset: counts[attack, subset] for subset in subsets}) for attack in attacks]


def format_check(check: CorpusCheck) -> str:
    """The report of :func:`prepare_corpus`, for people."""
    lines = [f"{check.dataset} under {check.root}: {len(check.trials):,} trials ({check.seconds:.1f} s)", "",
             f"{'subset':<14}{'rows':>10}{'published':>12}"]
    for subset, (n, want) in check.counts.items():
        lines.append(f"{subset:<14}{n:>10,}{(f'{want:,}' if want else 'key only'):>12}")
    lines.append(f"missing files: 0; extra audio files no protocol names: {len(check.extra):,}"
                 + (f" (e.g. {'; '.join(str(p) for p in check.extra[:EXAMPLES])})" if check.extra else ""))
    table = label_attack_table(check.trials)
    subsets = list(table[0][1]) if table else []
    lines += ["", f"{'label / attack':<16}" + "".join(f"{s:>12}" for s in subsets)]
    lines += [f"{attack:<16}" + "".join(f"{n[s]:>12,}" for s in subsets) for attack, n in table]
    if check.audio:
        good = [c for c in check.audio.values() if c.duration is not None and not c.error]
        rates = Counter(c.sample_rate for c in good)
        durations = np.array([c.duration for c in good]) if good else np.zeros(1)
        lines += ["", "audio (decoded every file)",
                  "  sample rates: " + ", ".join(f"{rate} Hz x {n:,}" for rate, n in rates.most_common()),
                  f"  durations: min {durations.min():.2f} s, mean {durations.mean():.2f} s, "
                  f"max {durations.max():.2f} s, total {durations.sum() / 3600:.2f} h",
                  f"  silent: {len(check.silent):,}"
                  + (f" (e.g. {'; '.join(map(str, check.silent[:EXAMPLES]))})" if check.silent else ""),
                  f"  corrupt: {len(check.corrupt):,}"
                  + (" (e.g. " + "; ".join(f"{p}: {check.audio[p].error}" for p in check.corrupt[:EXAMPLES]) + ")"
                     if check.corrupt else "")]
    if check.shard_index is not None:
        lines += ["", f"shards: {check.shards} (" + ", ".join(
            f"{subset} {len(entry['shards'])} x up to {check.shard_index['per_shard']:,}"
            for subset, entry in check.shard_index["subsets"].items()) + " utterances)"]
    if check.manifest is not None:
        dropped = f", {check.dropped:,} unusable file(s) left out" if check.dropped else ""
        lines += ["", f"manifest: {check.manifest} ({len(check.trials) - check.dropped:,} rows{dropped})"]
    return "\n".join(lines)


def parse_expected(text: str | None) -> dict[str, int] | None:
    """``train=100,dev=50`` -> ``{"train": 100, "dev": 50}`` (None: the published counts).

    >>> parse_expected("train=100, dev=50")
    {'train': 100, 'dev': 50}
    """
    if not text:
        return None
    expected = {}
    for item in text.split(","):
        subset, _, count = item.strip().partition("=")
        if not subset or not count.strip().isdigit():
            raise InputError(f"--expect takes SUBSET=ROWS pairs separated by commas, e.g. train=100,dev=50; "
                             f"got {item.strip()!r}")
        expected[subset.strip()] = int(count)
    return expected


def unusable_line(check: CorpusCheck) -> str:
    """The one line that explains why no manifest or shards were written."""
    problems = [f"{path}: {check.audio[path].error or 'digital silence'}" for path in check.unusable]
    return (summarise(problems, "unusable audio file(s)") + "; no manifest or shards written (fix or remove them, "
            "or pass --drop-unusable to leave them out)")


def as_dict(check: CorpusCheck) -> dict[str, Any]:
    """Counts of a check, for JSON (benchmarks, tests)."""
    return {"dataset": check.dataset, "trials": len(check.trials), "extra": len(check.extra),
            "silent": len(check.silent), "corrupt": len(check.corrupt), "dropped": check.dropped,
            "manifest": str(check.manifest) if check.manifest else None, "seconds": check.seconds}
