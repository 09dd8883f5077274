"""``plastispoof adapt``: fit a detector to the user's own channel from a folder of their genuine recordings.

1. The recordings are split by file (seeded) into an adapt part and a held-out part (``held_out``, default 30 %);
   the adapt part is split again 80 / 20 into train and dev (dev picks nothing here: it is the trainer's
   per-epoch check, and the run keeps the last epoch).
2. Copy-synthesis spoofs of every recording of both parts, with the chosen families (default: the copy-synthesis
   vocoders the default detector trained on), through one shared channel: one corpus whose eval subset is the
   held-out part (``OUT/corpus``).
3. The starting detector (``--from default``, a shipped detector's name, or a run directory of the same
   architecture) is grown and trained with the recipe (dropin-frozen by default: the published and earlier
   weights stay frozen, only new filters in the last block and the head train), on the adapt part, with the same
   RawBoost + codec augmentation as the default detector.
4. It is calibrated on the held-out part, and the held-out trials are scored by the starting and by the adapted
   detector: the before/after table (pooled and per family) is printed and stored in the run's card.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json, atomic_write_text

GROWABLE = ("aasist", "aasist-l")  # models the dropin recipe grows (the encoder's last block is a growth site)
MIN_HELD_OUT = 4  # held-out recordings: fewer cannot tell one EER from the next (a file is 25 points)
MIN_TRAIN = 6
DEFAULT_FAMILIES = ("world", "griffinlim", "lpc", "sinusoidal")
RECIPES = ("dropin-frozen", "dropin-unfrozen", "finetune")


def minimum_files(held_out: float) -> int:
    """The fewest recordings that leave MIN_HELD_OUT held out and MIN_TRAIN (train + dev) to adapt on."""
    n = MIN_HELD_OUT + MIN_TRAIN
    while round(held_out * n) < MIN_HELD_OUT or n - round(held_out * n) < MIN_TRAIN:
        n += 1
    return n


def split_files(n: int, held_out: float, seed: int) -> list[str]:
    """The subset of each of ``n`` recordings: ``eval`` (held out, round(held_out * n) of them), then of the rest
    20 % ``dev`` (one at least) and the others ``train``; seeded, by file."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 24]))
    order = rng.permutation(n)
    n_eval = round(held_out * n)
    n_dev = max(1, round(0.2 * (n - n_eval)))
    subsets = [""] * n
    for rank, index in enumerate(order):
        subsets[index] = "eval" if rank < n_eval else "dev" if rank < n_eval + n_dev else "train"
    return subsets


def starting_run(start: str) -> tuple[Path, str]:
    """The run directory to grow from and its description: a shipped detector's name or a run directory."""
    from plastispoof.runs import read_meta
    from plastispoof.shipped import shipped_names, verify_shipped

    path = Path(start)
    if start in shipped_names() and not path.exists():
        folder = verify_shipped(start)
        description = f"shipped {start}"
    elif path.is_dir():
        folder, description = path, str(path)
    else:
        raise InputError(f"--from {start!r}: not a shipped detector ({', '.join(shipped_names())}) nor a run "
                         "directory")
    model = (read_meta(folder).get("model") or {}).get("name")
    if model not in GROWABLE:
        raise InputError(f"--from {start}: a {model} model; the adapt recipe grows the last encoder block of "
                         f"{' or '.join(GROWABLE)} (AASIST) only")
    return folder, description


def adapt(bonafide: str | Path, out: str | Path, start: str = "default", held_out: float = 0.3,
          families: list[str] | None = None, recipe: str = "dropin-frozen", epochs: int = 2, seed: int = 42,
          language: str = "en", transcripts: str | Path | None = None, max_files: int | None = None,
          overrides: list[str] | None = None) -> dict[str, Any]:
    """Adapt ``start`` to the recordings under ``bonafide``; writes the run to ``out`` and returns the report
    (``report["table"]``: the before/after table as text)."""
    from plastispoof.data.copysynth.corpus import find_sources, limit_per_speaker, write_copysynth_corpus

    if not 0.05 <= held_out <= 0.8:
        raise InputError(f"--held-out is the share of recordings kept for testing: between 0.05 and 0.8, "
                         f"not {held_out}")
    if recipe not in RECIPES:
        raise InputError(f"unknown --recipe {recipe!r}; known: {', '.join(RECIPES)}")
    out = Path(out)
    if (out / "run" / "model.safetensors").is_file():
        raise InputError(f"{out} already holds an adapted run; choose another --out")
    start_dir, start_name = starting_run(start)
    sources = find_sources(bonafide, language, transcripts)
    if max_files is not None:
        sources = limit_per_speaker(sources, max_files, seed)
    needed = minimum_files(held_out)
    if len(sources) < needed:
        raise InputError(f"--bonafide {bonafide} has {len(sources)} usable recording(s); adapt needs {needed} at "
                         f"least with --held-out {held_out:g} ({MIN_HELD_OUT} held out to measure, {MIN_TRAIN} to "
                         "adapt on)")
    families = list(families or DEFAULT_FAMILIES)
    copy, tts = _split_families(families, language)
    subsets = split_files(len(sources), held_out, seed)
    started = time.perf_counter()
    corpus = out / "corpus"
    try:
        write_copysynth_corpus(corpus, sources, attacks=copy or [], tts=tts, seed=seed, subsets=subsets,
                               origin=f"adapt {Path(bonafide).resolve()}")
    except InputError as err:
        if "at least two families" in str(err):
            raise InputError(f"adapt needs bona fide and spoof trials of two spoof families at least (one to "
                             f"learn, one to check); --families gives {', '.join(families)}") from None
        raise
    spoofs = _spoof_count(corpus)
    if min(spoofs.values()) == 0:
        empty = [s for s, n in spoofs.items() if n == 0]
        raise InputError(f"the families {', '.join(families)} made no spoof of the {', '.join(empty)} part of "
                         f"--bonafide {bonafide} (a one-class corpus); choose --families that apply to it")
    corpus_seconds = time.perf_counter() - started
    run_dir = _train(start_dir, corpus, out, recipe, epochs, seed, overrides or [])
    report = _measure(start_dir, run_dir, corpus)
    report.update({"start": start_name, "bonafide": str(Path(bonafide).resolve()), "held_out": held_out,
                   "families": families, "recipe": recipe, "epochs": epochs, "seed": seed,
                   "files": {s: subsets.count(s) for s in ("train", "dev", "eval")},
                   "corpus_seconds": round(corpus_seconds, 1),
                   "seconds": round(time.perf_counter() - started, 1)})
    report["table"] = format_adapt_table(report)
    _write_card(run_dir, report)
    atomic_write_json(out / "adapt.json", report)
    atomic_write_text(out / "adapt.md", report["table"] + "\n")
    return report


def _split_families(families: list[str], language: str) -> tuple[list[str], list[str]]:
    """(copy-synthesis families, TTS engines) of ``families``; refuses a choice that would make no spoof (a
    one-class corpus) or fewer than two families."""
    from plastispoof.data.copysynth.tts import TTS_ENGINES

    tts = [f for f in families if f in TTS_ENGINES]
    copy = [f for f in families if f not in TTS_ENGINES]
    mute = [f for f in tts if not TTS_ENGINES[f].speaks(language)]
    if mute and not copy and len(mute) == len(tts):
        speaks = "; ".join(f"{f} speaks {' '.join(TTS_ENGINES[f].languages)}" for f in mute)
        raise InputError(f"--families {','.join(families)} make no spoof of recordings in {language!r} "
                         f"({speaks}): the "
                         "corpus would hold one class only; add copy-synthesis families (world, griffinlim, lpc, "
                         "sinusoidal, codec)")
    if mute:
        raise InputError(f"TTS engine(s) {', '.join(mute)} cannot speak {language!r}; leave them out of --families")
    if len(families) < 2:
        raise InputError(f"adapt needs two spoof families at least (--families {','.join(families)})")
    return copy, tts


def _spoof_count(corpus: Path) -> dict[str, int]:
    from plastispoof.data.copysynth import read_manifest

    counts = read_manifest(corpus)["counts"]
    return {subset: counts[subset]["spoof"] for subset in ("train", "eval")}


def _train(start_dir: Path, corpus: Path, out: Path, recipe: str, epochs: int, seed: int,
           overrides: list[str]) -> Path:
    from plastispoof.analysis.default_detector import load_default_recipe
    from plastispoof.calibrate import calibrate
    from plastispoof.config import apply_overrides, validate
    from plastispoof.runs import read_meta
    from plastispoof.training import train

    defaults = load_default_recipe()["train"]
    meta = read_meta(start_dir)
    args = ({"layers": "last", "num_layers": 1, "ratio": 0.5} if recipe.startswith("dropin") else {})
    if recipe == "dropin-frozen":
        args["train_head"] = True
    cfg = validate({
        "name": "run", "seed": seed, "output_dir": str(out),
        "model": {"name": meta["model"]["name"], "args": meta["model"].get("args", {})},
        "strategy": {"name": recipe, "args": {**args, "baseline_run": str(start_dir)}},
        "data": {**defaults["data"], "dataset": "asv19-la", "root": str(corpus),
                 "num_samples": meta["input"]["num_samples"], "max_dev": None},
        "train": {**defaults["train"], "epochs": epochs, "select": "last",
                  **({"lr": 1.0e-4} if recipe == "finetune" else {})},
    }, "adapt")
    cfg = apply_overrides(cfg, overrides)
    train(cfg, resume=False)
    calibrate(cfg.run_dir, "asv19-la", corpus, "eval")
    return cfg.run_dir


def _measure(start_dir: Path, run_dir: Path, corpus: Path) -> dict[str, Any]:
    """The held-out trials scored by the starting and the adapted detector."""
    from plastispoof.analysis.heldout import corpus_trials, family_of_attacks, heldout_report, score_trials
    from plastispoof.inference import Detector

    trials = corpus_trials(corpus, ("eval",))
    families = family_of_attacks(corpus)
    reports = {}
    for name, folder in (("before", start_dir), ("after", run_dir)):
        detector = Detector.from_run(folder)
        reports[name] = heldout_report(trials, score_trials(detector, trials), families, None)
    return reports


def format_adapt_table(report: dict[str, Any]) -> str:
    """The before/after table: held-out trials (bona fide vs each family's spoofs, and pooled)."""
    from plastispoof.analysis.heldout import ci_text, pct

    before, after = report["before"], report["after"]
    rows = [("pooled", before["pooled"], after["pooled"])]
    rows += [(f"family {f}", before["families"][f], after["families"][f]) for f in before["families"]]
    lines = [f"held-out part of {report['bonafide']}: {before['pooled']['n_bonafide']} bona fide, "
             f"{before['pooled']['n_spoof']} spoofs (EER %, 95 % bootstrap CI)",
             f"{'trials':<24} {'before (' + report['start'] + ')':<28} after (adapted)     change"]
    for label, b, a in rows:
        change = "-" if b["eer"] is None or a["eer"] is None else f"{100 * (a['eer'] - b['eer']):+.1f} points"
        lines.append(f"{label:<24} {pct(b['eer']) + ci_text(b['ci95']):<28} "
                     f"{pct(a['eer']) + ci_text(a['ci95']):<19} {change}")
    return "\n".join(lines)


def _write_card(run_dir: Path, report: dict[str, Any]) -> None:
    from plastispoof.card import write_run_card

    summary = {k: v for k, v in report.items() if k != "table"}
    write_run_card(run_dir, base={"adapted": summary})
