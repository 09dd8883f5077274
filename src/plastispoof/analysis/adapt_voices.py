"""docs/default-detector.md's adapt experiment (``plastispoof reproduce adapt-voices``): each Asterisk voice of the
default detector's training corpus in turn plays the user's channel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plastispoof.fileio import atomic_write_json


def adapt_each_voice(recipe: dict[str, Any], out: Path, voices: list[str] | None = None, files_per_voice: int = 40,
                     other_trials: int = 240, epochs: int = 2, seed: int = 42,
                     overrides: list[str] | None = None) -> str:
    """docs/default-detector.md's adapt experiment: each Asterisk voice in turn is the user's channel.

    The user's recordings are ``files_per_voice`` prompts of the voice that the training corpus did not use (the
    default detector never heard them); ``plastispoof adapt`` holds 30 % out. The other voices are measured on a
    seeded subset (``other_trials``) of the training corpus' eval trials of the other voices (never trained on),
    bona fide against the adapt families' spoofs, by the default and by the adapted detector."""
    import numpy as np

    from plastispoof.adapt import DEFAULT_FAMILIES, adapt
    from plastispoof.analysis.heldout import corpus_trials, family_of_attacks, heldout_report, score_trials
    from plastispoof.data.copysynth import read_manifest
    from plastispoof.data.copysynth.recipes import ASTERISK_VOICES, recipe_sources
    from plastispoof.inference import Detector
    from plastispoof.shipped import shipped_dir

    spec = recipe["train_corpus"]
    corpus = Path(spec["out"])
    manifest = read_manifest(corpus)
    used = set(manifest["settings"]["sources"])
    everything = recipe_sources(spec["recipe"], spec.get("voices"), spec.get("sound_roots"))
    voices = voices or list(manifest["speakers"])
    families = family_of_attacks(corpus)
    pool = [t for t in corpus_trials(corpus, ("eval",))
            if t.label == "bonafide" or families.get(t.attack) in DEFAULT_FAMILIES]
    rng = np.random.default_rng(seed)
    rows = []
    for voice in voices:
        user = out / voice
        folder = user / "recordings" / voice
        folder.mkdir(parents=True, exist_ok=True)
        unused = [s for s in everything if s.speaker == voice and str(s.path) not in used]
        chosen = [unused[i] for i in sorted(rng.permutation(len(unused))[:files_per_voice])]
        for source in chosen:
            user_copy(source.path, folder)
        report_path = user / "adapt.json"
        if report_path.is_file():
            report = json.loads(report_path.read_text())
        else:
            report = adapt(folder.parent, user, held_out=0.3, epochs=epochs, seed=seed,
                           language=ASTERISK_VOICES[voice].language, overrides=overrides)
        others = [t for t in pool if t.speaker != voice]
        others = [others[i] for i in sorted(np.random.default_rng(seed).permutation(len(others))[:other_trials])]
        measured = {}
        for name, folder_ in (("before", shipped_dir("default")), ("after", user / "run")):
            cache = user / f"others-{name}.json"
            if cache.is_file():
                scores = json.loads(cache.read_text())
            else:
                scores = score_trials(Detector.from_run(folder_), others)
                atomic_write_json(cache, scores)
            measured[name] = heldout_report(others, scores, families, None, resamples=200)["pooled"]["eer"]
        rows.append({"voice": voice, "files": report["files"], "own_before": report["before"]["pooled"]["eer"],
                     "own_after": report["after"]["pooled"]["eer"], "others_before": measured["before"],
                     "others_after": measured["after"], "seconds": report["seconds"]})
        atomic_write_json(out / "adapt-voices.json", rows)
    return format_adapt_voices(rows)


def user_copy(source: Path, folder: Path) -> Path:
    """One of the user's recordings in ``folder``: a link to a prompt, or, for the raw GSM 6.10 prompts of two
    voices (which only the corpus builder reads, as headerless GSM), the same samples as a 16-bit WAV: what a user
    of those prompts would hand to ``adapt``."""
    import soundfile as sf

    if source.suffix.lower() != ".gsm":
        link = folder / source.name
        if not link.is_symlink():
            link.symlink_to(source.resolve())  # absolute: a relative sound root would dangle
        return link
    wav = folder / f"{source.stem}.wav"
    if not wav.is_file():
        samples, rate = sf.read(source, dtype="int16")  # GSM 6.10 decodes to 16-bit samples: the WAV is exact
        sf.write(wav, samples, rate, subtype="PCM_16")
    return wav


def format_adapt_voices(rows: list[dict[str, Any]]) -> str:
    lines = ["| user's voice | files adapt / held out | own held-out EER % before -> after | relative fall | "
             "other voices EER % before -> after | change (points) | goal met |", "|" + "---|" * 7]
    for r in rows:
        fall = (r["own_before"] - r["own_after"]) / r["own_before"] if r["own_before"] else 0.0
        change = 100 * (r["others_after"] - r["others_before"])
        met = "yes" if fall >= 0.5 and change <= 1.0 else "no"
        lines.append(f"| {r['voice']} | {r['files']['train'] + r['files']['dev']} / {r['files']['eval']} | "
                     f"{100 * r['own_before']:.1f} -> {100 * r['own_after']:.1f} | {100 * fall:.0f} % | "
                     f"{100 * r['others_before']:.1f} -> {100 * r['others_after']:.1f} | {change:+.1f} | {met} |")
    return "\n".join(lines)
