"""Tiny corpora in the real on-disk layouts of every supported corpus (docs/formats.md), for prepare and the
manifest tests: protocol / key files in the published line shapes and short audio files.

``write_layout(name, root)`` returns ``{subset: (bona fide, spoof)}`` as written; every spoof utterance gets
attack ``A01`` or ``A02`` (corpora that name none: ``unknown``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from tiny_run import SAMPLE_RATE, bonafide_like, spoof_like, write_tiny_corpus

SECONDS = 0.05


def _audio(path: Path, spoof: bool, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = int(SECONDS * SAMPLE_RATE)
    sf.write(path, spoof_like(rng, samples) if spoof else bonafide_like(rng, samples), SAMPLE_RATE)


def _rows(n_bonafide: int, n_spoof: int):
    """``(i, spoof, attack)`` for each utterance."""
    for i in range(n_bonafide + n_spoof):
        spoof = i >= n_bonafide
        yield i, spoof, (f"A0{1 + i % 2}" if spoof else "-")


def asv19_pa(root: Path, counts=None, rng=None) -> dict:
    counts = counts or {"train": (3, 4), "dev": (2, 3), "eval": (2, 2)}
    rng = rng or np.random.default_rng(1)
    protocols = root / "PA" / "ASVspoof2019_PA_cm_protocols"
    protocols.mkdir(parents=True)
    for subset, (nb, ns) in counts.items():
        lines = []
        for i, spoof, attack in _rows(nb, ns):
            utt = f"PA_{subset[0].upper()}_{i:07d}"
            _audio(root / "PA" / f"ASVspoof2019_PA_{subset}" / "flac" / f"{utt}.flac", spoof, rng)
            lines.append(f"PA_{i % 2:04d} {utt} aaa {attack if spoof else '-'} {'spoof' if spoof else 'bonafide'}")
        suffix = "trn" if subset == "train" else "trl"
        (protocols / f"ASVspoof2019.PA.cm.{subset}.{suffix}.txt").write_text("\n".join(lines) + "\n")
    return counts


def asv21(root: Path, track: str = "LA", rng=None) -> dict:
    """Keys with eval, progress and hidden rows (2021 line shapes, DF with vocoder columns)."""
    rng = rng or np.random.default_rng(2)
    keys = root / "keys" / track / "CM"
    keys.mkdir(parents=True)
    lines, counts = [], {}
    for subset, (nb, ns) in {"eval": (2, 3), "progress": (1, 2), "hidden_track": (1, 1)}.items():
        counts[subset] = (nb, ns)
        for i, spoof, attack in _rows(nb, ns):
            utt = f"{track}_E_{subset[:2]}{i:05d}"
            _audio(root / f"ASVspoof2021_{track}_eval" / "flac" / f"{utt}.flac", spoof, rng)
            key = "spoof" if spoof else "bonafide"
            attack_field = attack if spoof else "bonafide"
            tail = " traditional_vocoder - - - -" if track == "DF" else ""
            second = "vcc2018" if track == "DF" else "ita_tx"
            lines.append(f"{track}_{i:04d} {utt} alaw {second} {attack_field} {key} notrim {subset}{tail}")
    (keys / "trial_metadata.txt").write_text("\n".join(lines) + "\n")
    return counts


def asv5(root: Path, rng=None) -> dict:
    rng = rng or np.random.default_rng(3)
    counts = {"train": (2, 3), "dev": (2, 2), "eval": (1, 2)}
    names = {"train": ("ASVspoof5.train.tsv", "flac_T", "T"), "dev": ("ASVspoof5.dev.track_1.tsv", "flac_D", "D"),
             "eval": ("ASVspoof5.eval.track_1.tsv", "flac_E_eval", "E")}
    for subset, (nb, ns) in counts.items():
        protocol, folder, letter = names[subset]
        lines = []
        for i, spoof, attack in _rows(nb, ns):
            utt = f"{letter}_{i:010d}"
            _audio(root / folder / f"{utt}.flac", spoof, rng)
            key = "spoof" if spoof else "bonafide"
            lines.append(f"{letter}_{i:04d} {utt} F - - - {'AC1' if spoof else '-'} {attack} {key} -")
        (root / protocol).write_text("\n".join(lines) + "\n")
    return counts


def in_the_wild(root: Path, rng=None) -> dict:
    rng = rng or np.random.default_rng(4)
    folder = root / "release_in_the_wild"
    lines = ["file,speaker,label"]
    for i, spoof, _ in _rows(3, 4):
        _audio(folder / f"{i}.wav", spoof, rng)
        lines.append(f"{i}.wav,Speaker {i % 2},{'spoof' if spoof else 'bona-fide'}")
    (folder / "meta.csv").write_text("\n".join(lines) + "\n")
    return {"eval": (3, 4)}


def fake_or_real(root: Path, folder: str = "for-norm", rng=None) -> dict:
    rng = rng or np.random.default_rng(5)
    counts = {"training": (2, 3), "validation": (1, 2), "testing": (2, 1)}
    for subset, (nb, ns) in counts.items():
        for i in range(nb):
            _audio(root / folder / subset / "real" / f"file{i}.wav", False, rng)
        for i in range(ns):
            _audio(root / folder / subset / "fake" / f"file{i}.wav", True, rng)
    return counts


def csv_corpus(root: Path, rng=None) -> dict:
    rng = rng or np.random.default_rng(6)
    lines = ["path,label,attack,speaker,subset"]
    counts = {"train": (2, 2), "eval": (1, 2)}
    for subset, (nb, ns) in counts.items():
        for i, spoof, attack in _rows(nb, ns):
            name = f"audio/{subset}/{i}.flac"
            _audio(root / name, spoof, rng)
            lines.append(f"{name},{'spoof' if spoof else 'bonafide'},{attack if spoof else ''},s{i % 2},{subset}")
    (root / "protocol.csv").write_text("\n".join(lines) + "\n")
    return counts


def write_layout(name: str, root: Path) -> dict:
    """Write corpus ``name`` (a dataset reader name) under ``root``; returns ``{subset: (bona fide, spoof)}``."""
    root.mkdir(parents=True, exist_ok=True)
    if name == "asv19-la":
        counts = {"train": (3, 4), "dev": (2, 3), "eval": (2, 2)}
        write_tiny_corpus(root, counts, seconds=SECONDS)
        return counts
    writers = {"asv19-pa": asv19_pa, "asv21-la": lambda r: asv21(r, "LA"), "asv21-df": lambda r: asv21(r, "DF"),
               "asv5": asv5, "in-the-wild": in_the_wild, "for-norm": fake_or_real, "csv": csv_corpus}
    return writers[name](root)


LAYOUTS = ("asv19-la", "asv19-pa", "asv21-la", "asv21-df", "asv5", "in-the-wild", "for-norm", "csv")
