"""The shipped default detector's recipe (``plastispoof reproduce default-detector``, configs/default-detector.yaml).

Steps, each skipped when its output is already there with the same settings:

1. the training corpus (``synth --recipe asterisk-world``: non-English Asterisk voices and their spoofs) and the
   English test corpus (``synth --recipe asterisk-en``);
2. the official AASIST imported as a run (its SHA-256 must be the config's ``weights_sha256``);
3. dropin-frozen + augmentation training on the training corpus' ``lofo/<held-out copy family>`` root;
4. calibration on that root's dev subset (non-English);
5. the held-out report (:mod:`plastispoof.analysis.heldout`): English bona fide vs English spoofs of every family,
   pooled, per family, per speaker, with bootstrap intervals, for the trained detector and the zero-shot AASIST,
   and the same report on the training root's eval trials (per training voice: the card's ``in_domain``);
6. the shipped files (:func:`plastispoof.shipped.package_run`) written to ``OUT/shipped``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import yaml

from plastispoof.analysis.recipes import REPO, merge_dicts
from plastispoof.config import ExperimentConfig, validate
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json

RECIPE = REPO / "configs" / "default-detector.yaml"


def load_default_recipe(path: str | Path = RECIPE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"recipe not found: {path}")
    recipe = yaml.safe_load(path.read_text())
    for key in ("train_corpus", "test_corpus", "held_out_families", "train", "weights_sha256"):
        if key not in recipe:
            raise InputError(f"{path} has no {key!r}")
    return recipe


def build_corpora(recipe: dict[str, Any], base: Path = Path(".")) -> tuple[Path, Path]:
    """Write (or reuse) the training and the English test corpus; returns their roots."""
    from plastispoof.data.copysynth import build_copysynth_corpus

    roots = []
    for key in ("train_corpus", "test_corpus"):
        spec = recipe[key]
        out = base / spec["out"]
        roots.append(build_copysynth_corpus(
            out, recipe=spec["recipe"], voices=spec.get("voices"), attacks=spec.get("attacks"), tts=spec.get("tts"),
            sound_roots=spec.get("sound_roots"), max_utterances=spec.get("max_utterances"),
            seed=int(recipe.get("seed", 42))))
    return roots[0], roots[1]


def training_root(recipe: dict[str, Any], train_corpus: Path) -> Path:
    """The leave-one-family-out root the detector trains on: the first held-out family the corpus has."""
    from plastispoof.data.copysynth import read_manifest

    families = read_manifest(train_corpus)["families"]
    in_corpus = [f for f in recipe["held_out_families"] if f in families]
    if not in_corpus:
        return train_corpus
    if len(in_corpus) > 1:
        raise InputError(f"the recipe holds out {', '.join(in_corpus)} of the training corpus; a corpus has one "
                         "leave-one-family-out root per family, so hold out one of its families")
    return train_corpus / read_manifest(train_corpus)["lofo"][in_corpus[0]]


def import_official(weights: str | Path, out: Path, recipe: dict[str, Any]) -> Path:
    """The official AASIST as a run under ``out/imported`` (checked against the recipe's SHA-256)."""
    from plastispoof.pretrained import file_digest, import_checkpoint

    weights = Path(weights)
    if not weights.is_file():
        raise InputError(f"weights not found: {weights} (the official AASIST.pth)")
    digest = file_digest(weights)
    if digest != recipe["weights_sha256"]:
        raise InputError(f"{weights} has SHA-256 {digest[:16]}..., not the official AASIST.pth the recipe names "
                         f"({recipe['weights_sha256'][:16]}...)")
    run_dir = out / "imported-aasist"
    if (run_dir / "model.safetensors").is_file():
        return run_dir
    cfg = recipe["train"]
    return import_checkpoint(cfg["model"]["name"], weights, run_dir,
                             overrides=[f"data.eval_batch_size={cfg['data'].get('eval_batch_size', 8)}"],
                             num_samples=cfg["data"]["num_samples"])


def training_config(recipe: dict[str, Any], root: Path, baseline_run: Path, out: Path,
                    overrides: list[str] | None = None) -> ExperimentConfig:
    from plastispoof.config import apply_overrides

    spec = recipe["train"]
    args = dict(spec.get("strategy", {}).get("args", {}), baseline_run=str(baseline_run))
    data = merge_dicts(spec, {"seed": int(recipe.get("seed", 42)), "output_dir": str(out),
                              "data": {"root": str(root)}, "strategy": {"args": args}})
    return apply_overrides(validate(data, "configs/default-detector.yaml train"), overrides or [])


class _StopTraining(Exception):
    """Raised at the start of the epoch the recipe stops before."""


def train_until(cfg: ExperimentConfig, stop_after: int | None, resume: bool) -> Path:
    """Train ``cfg``; with ``stop_after``, end its (single) stage after that many epochs of the configured
    schedule: the learning rate follows ``train.epochs``, the run keeps the stage's best weights so far and
    finishes as usual (window-mean dev threshold, meta.json). Deterministic like any run: the same seed gives the
    same weights, also when a run killed after its checkpoint is resumed."""
    from plastispoof.training.trainer import Trainer

    class CappedTrainer(Trainer):
        def _train_epoch(self, stage):
            if stop_after is not None and self.progress.epoch >= stop_after:
                raise _StopTraining
            return super()._train_epoch(stage)

        def _train_stage(self, index, stage):
            try:
                super()._train_stage(index, stage)
            except _StopTraining:
                pass

    return CappedTrainer(cfg).run(resume)


def train_default(recipe: dict[str, Any], weights: str | Path, out: Path, base: Path = Path("."),
                  overrides: list[str] | None = None) -> tuple[Path, Path, Path]:
    """Steps 1-3: corpora, import, training. Returns ``(run_dir, training root, English test root)``."""
    imported = import_official(weights, out, recipe)  # the checkpoint is checked before any corpus is built
    train_corpus, test_corpus = build_corpora(recipe, base)
    root = training_root(recipe, train_corpus)
    cfg = training_config(recipe, root, imported, out, overrides)
    started = time.perf_counter()
    run_dir = cfg.run_dir
    if not (run_dir / "model.safetensors").is_file() or not _finished(run_dir):
        resume = (run_dir / "meta.json").exists() or (run_dir / "checkpoints").exists()
        train_until(cfg, recipe.get("stop_after_epochs"), resume)
        atomic_write_json(run_dir / "wall_time.json", {"train_seconds": round(time.perf_counter() - started, 1)})
    return run_dir, root, test_corpus


def _finished(run_dir: Path) -> bool:
    from plastispoof.runs import read_meta

    return bool(read_meta(run_dir).get("finished"))


# --------------------------------------------------------------------------- calibration, measurement, card


def calibrate_on_dev(run_dir: Path, root: Path) -> Path:
    """Step 4: the calibration (and the default operating point) from the training root's dev subset."""
    from plastispoof.calibrate import calibrate
    from plastispoof.calibration import CALIBRATION

    if not (run_dir / CALIBRATION).is_file():
        calibrate(run_dir, "asv19-la", root, "dev")
    return run_dir / CALIBRATION


def measure_heldout(run_dir: Path, test_root: Path, cache: Path, resamples: int = 1000) -> dict[str, Any]:
    """Step 5 for one detector: every trial of the English corpus scored (cached in ``cache``), the report at
    the detector's default operating point (the dev EER threshold of its calibration)."""
    from plastispoof.analysis.heldout import corpus_trials, family_of_attacks

    return _report_at_operating_point(run_dir, corpus_trials(test_root), family_of_attacks(test_root), cache,
                                      resamples)


def measure_in_domain(run_dir: Path, train_corpus: Path, root: Path, cache: Path,
                      resamples: int = 1000) -> dict[str, Any]:
    """The training voices' eval trials (recordings and spoofs never trained on, speakers and languages seen;
    the held-out codec family included), per speaker: what the English test cannot give with its one voice."""
    from plastispoof.analysis.heldout import corpus_trials, family_of_attacks

    return _report_at_operating_point(run_dir, corpus_trials(root, ("eval",)), family_of_attacks(train_corpus),
                                      cache, resamples)


def _report_at_operating_point(run_dir: Path, trials: list, families: dict[str, str], cache: Path,
                               resamples: int) -> dict[str, Any]:
    from plastispoof.analysis.heldout import heldout_report, score_trials
    from plastispoof.calibration import decision_threshold, read_calibration
    from plastispoof.inference import Detector

    calibration = read_calibration(run_dir / "calibration.json")
    if cache.is_file() and json.loads(cache.read_text()).get("model_hash") == calibration.model_hash:
        scores = json.loads(cache.read_text())["scores"]
    else:
        scores = score_trials(Detector.from_run(run_dir), trials)
        atomic_write_json(cache, {"model_hash": calibration.model_hash, "scores": scores})
    _, threshold = decision_threshold("eer", calibration, None)
    return heldout_report(trials, scores, families, threshold, resamples=resamples)


def training_data_summary(recipe: dict[str, Any], train_corpus: Path, root: Path) -> dict[str, Any]:
    """The card's ``training_data``: voices with package and licence, languages, families, counts."""
    from plastispoof.data.copysynth import read_manifest
    from plastispoof.data.copysynth.recipes import ASTERISK_VOICES
    from plastispoof.data.protocols import read_dataset

    manifest = read_manifest(train_corpus)
    held_out = list(recipe["held_out_families"])
    train = read_dataset("asv19-la", str(root), "train")
    dev = read_dataset("asv19-la", str(root), "dev")
    voices = []
    for name, info in manifest["speakers"].items():
        voice = ASTERISK_VOICES.get(name)
        voices.append({"name": name, "language": info["language"], "package": voice.package if voice else None,
                       "licence": voice.licence if voice else None,
                       "bonafide": sum(info["bonafide"].values()), "bonafide_per_subset": info["bonafide"]})
    used = train + dev
    augment = recipe["train"].get("data", {}).get("augment", [])
    return {
        "corpus": str(train_corpus), "recipe": recipe["train_corpus"]["recipe"],
        "languages": sorted({v["language"] for v in voices}), "voices": voices,
        "bonafide": sum(t.label == "bonafide" for t in used), "spoof": sum(t.label != "bonafide" for t in used),
        "train_trials": len(train), "dev_trials": len(dev),
        "families_trained": [f for f in manifest["families"] if f not in held_out],
        "families_held_out": held_out,
        "families": {name: {k: v for k, v in f.items() if k != "attacks"} | {"attacks": f["attacks"]}
                     for name, f in manifest["families"].items()},
        "channels": ("8 kHz telephone prompts (band-limited to 3.8 kHz by the corpus' shared channel); training "
                     "crops augmented with " + ", ".join(f"{a['name']} (p {a.get('p')})" for a in augment)
                     + " as in docs/robustness.md"),
    }


NOT_FOR = [
    "deciding alone about a person or a call: it is one piece of evidence, with the error rates on this card",
    "neural TTS and voice-conversion systems (VITS, XTTS, ElevenLabs-like, diffusion or codec language models): "
    "none was available offline to train or test on; its training spoofs are classical vocoders and "
    "eSpeak NG / Festival, so it has not been shown to catch modern neural voices",
    "wideband studio or phone-camera recordings: every training recording was an 8 kHz telephone prompt band-limited "
    "to 3.8 kHz; other channels were only simulated (RawBoost, codec round trips)",
    "languages other than French, Spanish, Italian, Russian and the English of the held-out test, and speakers "
    "unlike professional IVR voice talent reading prompts (conversational, noisy, children's, far-field speech)",
    "codec chains as attacks: it is trained to accept MP3 / Opus / AMR round trips of real speech (a codec is a "
    "channel), so a genuine recording that was merely transcoded should be called bona fide",
    "files shorter than about a second, music, or several speakers at once",
]


def build_card(recipe: dict[str, Any], run_dir: Path, train_corpus: Path, root: Path, test_root: Path,
               heldout: dict[str, Any], zero_shot: dict[str, Any], in_domain: dict[str, Any] | None,
               settings: dict[str, Any]) -> dict[str, Any]:
    from plastispoof.card import run_card
    from plastispoof.data.copysynth import read_manifest

    calibration = json.loads((run_dir / "calibration.json").read_text())
    base = run_card(run_dir, base={})
    english = ", ".join(read_manifest(test_root)["speakers"])
    pooled = heldout["pooled"]
    return {
        **base,
        "name": "default",
        "summary": ("the official AASIST adapted with dropin-frozen + augmentation on French, Spanish, Italian and "
                    "Russian telephone prompts and their copy-synthesis and TTS spoofs; calibrated; never trained "
                    "on English"),
        "starts_from": {"name": "official AASIST (Jung et al., ICASSP 2022)", "file": "AASIST.pth",
                   "licence": "MIT", "copyright": "Copyright (c) 2021-present NAVER Corp.",
                   "sha256": recipe["weights_sha256"], "url": "https://github.com/clovaai/aasist"},
        "training_data": training_data_summary(recipe, train_corpus, root),
        "operating_point": {
            "name": "eer", "threshold": calibration["eer_threshold"], "dev_eer": calibration["dev_eer"],
            "meaning": (f"a file is called bona fide when its score (mean over 2 s windows) is above "
                        f"{calibration['eer_threshold']:.4g}: the threshold where the non-English dev set's bona "
                        f"fide files rejected and spoofs accepted are equal ({100 * calibration['dev_eer']:.1f} % "
                        "each); llr and p_bonafide come from the calibration (docs/decisions.md); "
                        "--operating-point fpr=0.01 or bayes choose another")},
        "heldout": {**heldout, "description": f"{english} (asterisk-core-sounds-en, never heard in training) vs "
                                              f"English spoofs of every family; {pooled['n_bonafide']} bona fide, "
                                              f"{pooled['n_spoof']} spoofs"},
        "heldout_zero_shot": zero_shot,
        "in_domain": in_domain,
        "not_for": NOT_FOR,
        "recipe": settings,
    }


def format_goals_table(card: dict[str, Any]) -> str:
    """The card's held-out table (this detector beside the zero-shot AASIST) as Markdown."""
    from plastispoof.analysis.heldout import comparison_rows, markdown

    rows = comparison_rows({"default": card["heldout"], "zero-shot": card["heldout_zero_shot"]})
    pooled, zero = card["heldout"]["pooled"], card["heldout_zero_shot"]["pooled"]
    table = markdown(["English trials", "default detector EER % [95 % CI]", "zero-shot official AASIST"], rows)
    def share(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f} %"

    text = (table + "\n\nAt each one's default operating point (its non-English dev EER threshold): "
            f"default: {share(pooled.get('bonafide_called_bonafide'))} of English bona fide called bona fide, "
            f"{share(pooled.get('spoof_called_spoof'))} of English spoofs called spoof; zero-shot AASIST: "
            f"{share(zero.get('bonafide_called_bonafide'))} and {share(zero.get('spoof_called_spoof'))}.")
    in_domain = card.get("in_domain")
    if in_domain:
        rows = comparison_rows({"default": in_domain["default"], "zero-shot": in_domain["zero_shot"]})
        text += ("\n\n" + markdown(["training voices' eval trials (never trained on)",
                                     "default detector EER % [95 % CI]", "zero-shot official AASIST"], rows))
    return text


def reproduce_default_detector(weights: str | Path, out: str | Path = Path("runs/default-detector"),
                               recipe_path: str | Path = RECIPE, overrides: list[str] | None = None,
                               resamples: int = 1000) -> str:
    """Every step of the module docstring; returns the card's table. The shipped folder is ``OUT/shipped/default``
    (copy it to ``src/plastispoof/shipped/default`` to ship it)."""
    from plastispoof.shipped import sha256_of
    from plastispoof.shipped.package import package_run

    out = Path(out)
    recipe = load_default_recipe(recipe_path)
    started = time.perf_counter()
    run_dir, root, test_root = train_default(recipe, weights, out, overrides=overrides)
    imported = out / "imported-aasist"
    calibrate_on_dev(run_dir, root)
    calibrate_on_dev(imported, root)
    heldout = measure_heldout(run_dir, test_root, out / "scores-default-en.json", resamples)
    zero_shot = measure_heldout(imported, test_root, out / "scores-zero-shot-en.json", resamples)
    train_corpus = Path(recipe["train_corpus"]["out"])
    in_domain = {"default": measure_in_domain(run_dir, train_corpus, root, out / "scores-default-eval.json",
                                              resamples),
                 "zero_shot": measure_in_domain(imported, train_corpus, root, out / "scores-zero-shot-eval.json",
                                                resamples)}
    wall = (out / "wall_time.json")
    train_seconds = json.loads(wall.read_text())["train_seconds"] if wall.is_file() else None
    settings = {"command": "plastispoof reproduce default-detector --weights AASIST.pth", "config":
                str(Path(recipe_path).name), "seed": int(recipe.get("seed", 42)), "overrides": overrides or [],
                "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads 1",
                "train_seconds": train_seconds, "wall_seconds": round(time.perf_counter() - started, 1)}
    card = build_card(recipe, run_dir, train_corpus, root, test_root, heldout, zero_shot, in_domain, settings)
    shipped = package_run(run_dir, out / "shipped" / "default", card, recipe["weights_sha256"])
    text = format_goals_table(card)
    return (f"{text}\n\nshipped folder {shipped} (weights sha256 {sha256_of(shipped / 'model.safetensors')}); "
            "copy it to src/plastispoof/shipped/default to ship it")

