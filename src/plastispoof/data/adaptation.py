"""A continual-adaptation split of the embedded corpus: adapt a trained detector to attacks it never saw, on a few
labelled examples of them, and measure both what it learns and what it forgets.

The embedded corpus's eval subset holds the seen attacks (A01-A06, also in train and dev) and the unseen ones
(A07-A13, eval only). :func:`write_adaptation_split` splits the eval **speakers** (so no voice is in both the
adaptation set and the test): a seeded share of them (``fraction``) gives the labelled adaptation set (split by
trial into train and dev), the rest are held out for testing. Two corpus roots are written beside the corpus, in the
same ASVspoof 2019 LA layout
(audio linked, not copied), so every command reads them as ``--dataset synthetic``::

    <corpus>/adaptation/               train, dev: adaptation speakers, bona fide + NEW (unseen) attacks
                                       eval: held-out speakers, bona fide + new attacks      -> learning
    <corpus>/adaptation/old-attacks/   eval: held-out speakers, bona fide + OLD (seen) attacks -> forgetting
                                       (train, dev: as above)
    <corpus>/adaptation/split.json     speakers, attacks and counts of every part

Adapt with ``plastispoof train`` (``data.root: <corpus>/adaptation``, a strategy with ``baseline_run``), then
``plastispoof evaluate RUN --dataset synthetic --root <corpus>/adaptation`` (learning) and ``--root
<corpus>/adaptation/old-attacks`` (forgetting).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from plastispoof.data.synthetic import SEEN_ATTACKS, SUBSETS, audio_dir, protocol_path
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_text

ADAPTATION = "adaptation"
OLD_ATTACKS = "old-attacks"


def _read_eval(root: Path) -> list[list[str]]:
    path = protocol_path(root, "eval")
    if not path.is_file():
        raise InputError(f"{root} holds no embedded corpus (no {path}); write one with plastispoof synth first")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _link_audio(split_root: Path, corpus_root: Path) -> None:
    """Every subset folder of ``split_root`` points at the corpus's eval audio (all trials come from there)."""
    target = audio_dir(corpus_root, "eval").parent
    for subset in SUBSETS:
        link = audio_dir(split_root, subset).parent
        link.parent.mkdir(parents=True, exist_ok=True)
        relative = os.path.relpath(target, link.parent)
        if link.is_symlink() and os.readlink(link) == relative:
            continue
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise InputError(f"{link} exists and is not a link this split wrote; remove it or choose another corpus")
        link.symlink_to(relative, target_is_directory=True)


def _write_root(split_root: Path, corpus_root: Path, parts: dict[str, list[list[str]]]) -> None:
    for subset, lines in parts.items():
        path = protocol_path(split_root, subset)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(" ".join(fields) + "\n" for fields in lines))
    _link_audio(split_root, corpus_root)


def write_adaptation_split(root: str | os.PathLike, fraction: float = 0.25, seed: int = 42) -> Path:
    """Write the adaptation split of the embedded corpus at ``root`` (see the module notes); returns
    ``root/adaptation``. ``fraction`` of the eval speakers (at least one) give the labelled adaptation set;
    at least one speaker is held out. Of the adaptation speakers' trials, a seeded third of each class (at
    least one) is the dev set that picks the best epoch, the rest is trained on. The same corpus, fraction and
    seed give the same split.
    """
    if not 0 < fraction < 1:
        raise InputError(f"adaptation fraction must be between 0 and 1, got {fraction}")
    root = Path(root)
    lines = _read_eval(root)
    speakers = sorted({fields[0] for fields in lines})
    chosen = max(1, round(fraction * len(speakers)))
    if chosen >= len(speakers):
        raise InputError(f"the eval subset of {root} has {len(speakers)} speakers: too few to adapt on {chosen} "
                         "and hold one out (use a bigger profile or a smaller fraction)")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    order = [speakers[i] for i in rng.permutation(len(speakers))]
    adapting, held_out = set(order[:chosen]), set(order[chosen:])

    def new_or_bonafide(fields: list[str]) -> bool:
        return fields[4] == "bonafide" or fields[3] not in SEEN_ATTACKS

    def old_or_bonafide(fields: list[str]) -> bool:
        return fields[4] == "bonafide" or fields[3] in SEEN_ATTACKS

    # The adaptation speakers' trials: a third of each class (at least one) for dev, the rest to train on.
    train, dev = [], []
    for label in ("bonafide", "spoof"):
        pool = [f for f in lines if f[0] in adapting and new_or_bonafide(f) and f[4] == label]
        if len(pool) < 2:
            raise InputError(f"the adaptation speakers of {root} have {len(pool)} {label} trial(s) of the new "
                             "attacks: too few to train and select on (use a bigger profile or a larger fraction)")
        shuffled = [pool[i] for i in rng.permutation(len(pool))]
        n_dev = max(1, len(pool) // 3)
        dev += shuffled[:n_dev]
        train += shuffled[n_dev:]
    learning = [f for f in lines if f[0] in held_out and new_or_bonafide(f)]
    forgetting = [f for f in lines if f[0] in held_out and old_or_bonafide(f)]
    split_root = root / ADAPTATION
    _write_root(split_root, root, {"train": train, "dev": dev, "eval": learning})
    _write_root(split_root / OLD_ATTACKS, root, {"train": train, "dev": dev, "eval": forgetting})

    def count(part: list[list[str]]) -> dict[str, int]:
        return {"bonafide": sum(f[4] == "bonafide" for f in part), "spoof": sum(f[4] != "bonafide" for f in part)}

    new_attacks = sorted({f[3] for f in lines if f[4] != "bonafide" and f[3] not in SEEN_ATTACKS})
    summary = {"corpus": str(root), "fraction": fraction, "seed": seed,
               "speakers": {"adapting": sorted(adapting), "held_out": sorted(held_out)},
               "attacks": {"new": new_attacks, "old": sorted({f[3] for f in forgetting if f[4] != "bonafide"})},
               "counts": {"adapt_train": count(train), "adapt_dev": count(dev), "learning_eval": count(learning),
                          "forgetting_eval": count(forgetting)},
               "roots": {"learning": ADAPTATION, "forgetting": f"{ADAPTATION}/{OLD_ATTACKS}"}}
    atomic_write_text(split_root / "split.json", json.dumps(summary, indent=1) + "\n")
    return split_root
