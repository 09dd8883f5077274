"""Detectors shipped inside the package: ``plastispoof score FILE`` with no model option uses ``default``.

Each shipped model is a folder of package data beside this file (no download at run time)::

    shipped/<name>/
      meta.json              what rebuilds the model (name, arguments, growth transforms, input length)
      model.safetensors      the weights
      calibration.json       score -> LLR, and the dev scores behind the default operating point
      card.json              the model card: training data, held-out results, what it is not for, and the
                             SHA-256 of every file above (checked before the weights are used)
      NOTICE                 credits of the weights it starts from

Only the standard library is imported here, so ``plastispoof models`` and ``info default`` stay fast; PyTorch is
imported when a detector is loaded (:func:`load_shipped`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from plastispoof.errors import InputError

SHIPPED_DIR = Path(__file__).resolve().parent
DEFAULT = "default"
CARD = "card.json"
CHECKED_FILES = ("meta.json", "model.safetensors", "calibration.json")  # hashed into the card's "files"


def shipped_names() -> list[str]:
    """The names of the shipped detectors (folders holding a card), sorted."""
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir() and (p / CARD).is_file())


def shipped_dir(name: str) -> Path:
    """The folder of shipped detector ``name``; :class:`InputError` listing the known ones."""
    names = shipped_names()
    if name not in names:
        raise InputError(f"unknown shipped model {name!r}; known: {', '.join(names) or 'none'}")
    return SHIPPED_DIR / name


def read_shipped_card(name: str) -> dict[str, Any]:
    return json.loads((shipped_dir(name) / CARD).read_text(encoding="utf-8"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_shipped(name: str) -> Path:
    """The folder of ``name`` once every file the card lists has the SHA-256 the card states; else one line."""
    folder = shipped_dir(name)
    expected = read_shipped_card(name).get("files") or {}
    for file in CHECKED_FILES:
        path = folder / file
        if file not in expected:
            raise InputError(f"shipped model {name}: its card states no SHA-256 for {file}; reinstall plastispoof")
        if not path.is_file():
            raise InputError(f"shipped model {name}: {file} is missing from {folder}; reinstall plastispoof")
        actual = sha256_of(path)
        if actual != expected[file]:
            raise InputError(f"shipped model {name}: {file} has SHA-256 {actual[:16]}..., the card states "
                             f"{expected[file][:16]}... (a corrupted or replaced file); reinstall plastispoof")
    return folder


def load_shipped(name: str = DEFAULT, **options: Any):
    """The shipped detector ``name`` (a :class:`~plastispoof.inference.Detector`) with its calibration, after the
    hash check. ``options`` go to the Detector (``precision``, ``device``, ...)."""
    from plastispoof.calibration import read_calibration
    from plastispoof.inference import Detector

    folder = verify_shipped(name)
    detector = Detector.from_run(folder, **options)
    detector.use_calibration(read_calibration(folder / "calibration.json"), source=f"shipped {name}'s calibration")
    detector.shipped_name = name
    return detector


def describe_shipped(name: str) -> str:
    """One line: name, model, strategy, training languages, held-out English EER."""
    card = read_shipped_card(name)
    heldout = (card.get("heldout") or {}).get("pooled") or {}
    eer = heldout.get("eer")
    languages = ", ".join((card.get("training_data") or {}).get("languages", [])) or "-"
    return (f"{name:<10} {card.get('model')} + {(card.get('strategy') or {}).get('name')}, trained on {languages}; "
            f"held-out English EER {'-' if eer is None else f'{100 * eer:.1f} %'}"
            + (" (default)" if name == DEFAULT else ""))


def list_shipped() -> str:
    """``plastispoof models``: one line per shipped detector."""
    return "\n".join(describe_shipped(name) for name in shipped_names())


def model_line(name: str) -> str:
    """The first line ``score`` prints when a shipped detector answers."""
    card = read_shipped_card(name)
    point = (card.get("operating_point") or {}).get("name", "eer")
    return (f"# model: shipped {name} ({card.get('model')} + {(card.get('strategy') or {}).get('name')}, "
            f"calibrated; decides at {point}; plastispoof info {name})")


def is_shipped_name(path: str | Path) -> bool:
    """True when ``path`` names a shipped detector rather than a file; a bare word that is neither a file nor a
    shipped name is an :class:`InputError` listing the shipped ones."""
    text = str(path)
    if Path(path).exists() or "/" in text or "\\" in text or Path(text).suffix:
        return False
    if text in shipped_names():
        return True
    raise InputError(f"no file {text!r} and no shipped model of that name; shipped: {', '.join(shipped_names())} "
                     f"(or give a run directory, model.onnx or card.json)")


def format_shipped_card(card: dict[str, Any]) -> str:
    """``plastispoof info default``: the run card's lines, then the data, the held-out results beside the
    zero-shot official AASIST, the default operating point and what the detector is not for."""
    from plastispoof.card import format_card

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f} %"

    def eer(row: dict[str, Any] | None) -> str:
        if not row or row.get("eer") is None:
            return "-"
        ci = row.get("ci95")
        return f"{100 * row['eer']:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")

    lines = [f"shipped      {card.get('name')}: {card.get('summary', '')}"]
    source = card.get("starts_from") or {}
    if source:
        lines.append(f"starts from  {source.get('name')} ({source.get('licence')}, {source.get('copyright')}); "
                     f"sha256 {source.get('sha256')}")
    lines.append(format_card(card))
    data = card.get("training_data") or {}
    if data:
        lines.append("")
        lines.append(f"training data  {data.get('bonafide')} bona fide and {data.get('spoof')} spoof files "
                     f"(train {data.get('train_trials')}, dev {data.get('dev_trials')}); languages "
                     f"{', '.join(data.get('languages', []))}; English: none, bona fide or spoof")
        for voice in data.get("voices", []):
            lines.append(f"  {voice['name']:<20} {voice['language']}  {voice['package']} ({voice['licence']}): "
                         f"{voice['bonafide']} bona fide prompts")
        lines.append(f"  spoof families trained: {', '.join(data.get('families_trained', []))}; held out: "
                     f"{', '.join(data.get('families_held_out', []))}")
        if data.get("channels"):
            lines.append(f"  channels: {data['channels']}")
    point = card.get("operating_point") or {}
    if point:
        lines.append("")
        lines.append(f"default operating point  {point.get('name')}: {point.get('meaning')}")
    heldout, zero = card.get("heldout") or {}, card.get("heldout_zero_shot") or {}
    if heldout:
        lines.append("")
        lines.append(f"held-out English ({heldout.get('description', '')}); EER % [95 % bootstrap CI]:")
        lines.append(f"  {'trials':<34} {'this detector':<22} zero-shot official AASIST")
        keys = [("pooled (every family)", heldout.get("pooled"), zero.get("pooled"))]
        keys += [(f"family {f}" + (" (held out)" if f in data.get("families_held_out", []) else ""),
                  row, (zero.get("families") or {}).get(f)) for f, row in (heldout.get("families") or {}).items()]
        keys += [(f"speaker {s}", row, (zero.get("speakers") or {}).get(s))
                 for s, row in (heldout.get("speakers") or {}).items()]
        for label, mine, theirs in keys:
            lines.append(f"  {label:<34} {eer(mine):<22} {eer(theirs)}")
        pooled = heldout.get("pooled") or {}
        lines.append(f"  at the default operating point: {pct(pooled.get('bonafide_called_bonafide'))} of the English "
                     f"bona fide files called bona fide, {pct(pooled.get('spoof_called_spoof'))} of the English "
                     f"spoofs called spoof")
    if card.get("not_for"):
        lines.append("")
        lines.append("not for:")
        lines.extend(f"  - {item}" for item in card["not_for"])
    recipe = card.get("recipe") or {}
    if recipe:
        lines.append("")
        lines.append(f"recipe       {recipe.get('command')} (seed {recipe.get('seed')}; {recipe.get('machine')}; "
                     f"training {recipe.get('train_seconds')} s)")
    return "\n".join(lines)
