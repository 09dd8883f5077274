"""Published checkpoints as starting points: ``plastispoof import`` turns foreign weights into a run directory.

Every strategy starts from a finished run (``baseline_run`` / ``init_from``). Importing makes a published detector
such a run, so fine-tuning, dropin, plasticity, LoRA and MoLEx can all start from it::

    plastispoof import aasist --weights AASIST.pth --out runs/aasist-official
    plastispoof train configs/unseen/aasist-dropin-frozen.yaml --set strategy.args.baseline_run=runs/aasist-official

Two kinds of source are understood:

* an official AASIST / AASIST-L ``.pth`` state_dict (read with ``torch.load(..., weights_only=True)``, loaded
  strictly into ``aasist`` / ``aasist-l``; a file of the other variant is refused naming the one it fits);
* a local Hugging Face folder (``config.json`` + weights) holding a wav2vec 2.0 / XLS-R, WavLM or HuBERT encoder,
  loaded into the SSL encoder of a model that has one (``ssl-nes2net``, ``ssl-nes2net-x``, ``ssl-aasist``,
  ``ssl-linear``, ``wav2vec2``). The rest of such a model (its back-end) starts from random weights.

The run directory is a normal one (``config.yaml``, ``meta.json``, ``model.safetensors``) with no training
stages, plus ``card.json`` saying where the weights came from (path, SHA-256, kind). Its ``meta.json`` names
the model with arguments that rebuild it without the source (an SSL encoder's whole config is stored), so the
run alone is enough to score, evaluate or start from, as for every run.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from torch import nn

from plastispoof import runs
from plastispoof.card import write_run_card
from plastispoof.config import apply_overrides, dump_config, validate
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_text
from plastispoof.models.aasist import OFFICIAL_MODELS, load_official
from plastispoof.models.base import build_model, count_parameters
from plastispoof.models.nes2net import SSLDetector
from plastispoof.models.wav2vec2 import Wav2Vec2
from plastispoof.registry import MODELS

CARD = "card.json"
# Weight files ``from_pretrained`` can read from a Hugging Face folder.
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                    "pytorch_model.bin.index.json")
_HF_KINDS = ("wav2vec2", "wavlm", "hubert")


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, in sorted order).

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()); _ = (folder / "a").write_text("x")
    >>> file_digest(folder) == file_digest(folder), len(file_digest(folder / "a"))
    (True, 64)
    """
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_hf_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face model folder, checked to name an SSL encoder we can load."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder: a Hugging Face model is a folder with config.json and weights")
    path = folder / "config.json"
    if not path.is_file():
        raise InputError(f"Hugging Face folder {folder} has no config.json (save it with save_pretrained)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON (line {err.lineno})") from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind not in _HF_KINDS:
        raise InputError(f"{path}: model_type {kind!r} is not an SSL encoder plastispoof can load "
                         f"({', '.join(_HF_KINDS)})")
    if not any((folder / name).is_file() for name in _HF_WEIGHT_FILES):
        raise InputError(f"Hugging Face folder {folder} has a config but no weights ({', '.join(_HF_WEIGHT_FILES)})")
    return config


def _ssl_model_args(model_name: str, args: dict[str, Any], folder: Path, kind: str) -> dict[str, Any]:
    """``args`` with the encoder pointed at ``folder`` (where the model keeps it: front-end or top level)."""
    cls = MODELS.get_or_fail(model_name)

    target = getattr(cls, "func", cls)  # registered partials (wav2vec2-small) wrap the class
    if isinstance(target, type) and issubclass(target, SSLDetector):
        frontend = {**args.get("frontend", {}), "pretrained": str(folder), "kind": kind}
        return {**args, "frontend": frontend}
    if isinstance(target, type) and issubclass(target, Wav2Vec2):
        if kind != "wav2vec2":
            raise InputError(f"model {model_name!r} holds a wav2vec2 encoder; {folder} holds a {kind} one "
                             f"(use an ssl-* model, e.g. ssl-nes2net)")
        return {**args, "pretrained": str(folder)}
    raise InputError(f"model {model_name!r} has no SSL encoder to load {folder} into; models with one: "
                     f"ssl-nes2net, ssl-nes2net-x, ssl-aasist, ssl-linear, wav2vec2")


def import_checkpoint(model_name: str, weights: str | Path, out: str | Path | None = None,
                      overrides: list[str] | None = None, num_samples: int | None = None) -> Path:
    """Write a run directory holding ``model_name`` with the weights at ``weights``; return its path.

    ``weights``: an official AASIST / AASIST-L ``.pth`` for ``aasist`` / ``aasist-l``, or a Hugging Face folder
    for a model with an SSL encoder. ``out`` defaults to ``runs/<model>-imported``. ``overrides`` are
    ``--set``-style ``model.args.x=y`` items (e.g. ``model.args.frontend.aggregation=weighted``).
    ``num_samples`` is the input length stored in the run (default: the model's published one, 64600).
    """
    weights = Path(weights)
    out = Path(out) if out is not None else Path("runs") / f"{model_name}-imported"
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} already exists and is not empty; choose another --out")
    if not weights.exists():
        raise InputError(f"weights not found: {weights}")
    cfg = validate({"name": out.name, "output_dir": str(out.parent), "model": {"name": model_name}}, "import")
    cfg = apply_overrides(cfg, overrides or [])
    model_name, args = cfg.model.name, dict(cfg.model.args)
    MODELS.get_or_fail(model_name)  # unknown names list the known ones before any file is read
    if weights.is_dir():
        hf_config = read_hf_config(weights)
        args = _ssl_model_args(model_name, args, weights.resolve(), hf_config["model_type"])
        model = build_model(model_name, **args)
        source = {"kind": "huggingface", "model_type": hf_config["model_type"],
                  "architectures": hf_config.get("architectures")}
    else:

        if model_name not in OFFICIAL_MODELS:
            raise InputError(f"a .pth state_dict imports into the official models ({', '.join(OFFICIAL_MODELS)}); "
                             f"for {model_name!r} pass a Hugging Face folder")
        model = load_official(model_name, weights)
        if args:
            raise InputError("an official checkpoint fixes the model's arguments; drop the model.args overrides")
        source = {"kind": "official-checkpoint", "format": "pytorch state_dict (torch.load weights_only=True)"}
    model.eval()
    rebuild_args = model.rebuild_args()
    cfg = validate({**cfg.model_dump(), "model": {"name": model_name, "args": rebuild_args}}, "import")
    if num_samples is not None:
        cfg = apply_overrides(cfg, [f"data.num_samples={num_samples}"])
    return write_imported_run(out, cfg, model, {**source, "path": str(weights.resolve()),
                                                "sha256": file_digest(weights)})


def write_imported_run(out: Path, cfg, model: nn.Module, source: dict[str, Any]) -> Path:
    """The run files of an imported model: config, weights, meta (no stages trained) and the card."""
    params = count_parameters(model)
    summary = {"index": 0, "name": "import", "epochs": 0, "params": params, "trainable_params": 0,
               "forward_ms": None, "backward_ms": None, "steps": 0, "best_epoch": None,
               "dev_eer": None, "dev_threshold": None}
    meta = {"model": {"name": cfg.model.name, "args": cfg.model.args},
            "strategy": {"name": "import", "args": {}, "reported_stage": None},
            "input": {"num_samples": cfg.data.num_samples, "sample_rate": cfg.data.sample_rate},
            "seed": None, "world_size": 1, "versions": runs.environment_versions(), "git_commit": runs.git_commit(),
            "transforms": [], "stages": [summary], "params": params, "trainable_params": 0,
            "dev_eer": None, "dev_threshold": None, "finished": True, "imported_from": source}
    card = {"model": cfg.model.name, "params": params, "source": source,
            "imported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "input": meta["input"], "score_direction": "higher = more bona fide (logit index 1 = bona fide)",
            "trained_here": False, "toolkit": meta["versions"]["plastispoof"], "git_commit": meta["git_commit"]}
    runs.save_weights(model.state_dict(), out / runs.MODEL)
    atomic_write_text(out / runs.CONFIG, dump_config(cfg))
    runs.write_meta(out, meta)

    write_run_card(out, base=card)  # the shared card format, with the import's source kept
    return out


def describe_import(run_dir: Path) -> str:
    """One line for the CLI: what was imported where."""
    meta = runs.read_meta(run_dir)
    source = meta.get("imported_from", {})
    return (f"imported {meta['model']['name']} ({meta['params']:,} parameters) from {source.get('path')} "
            f"[{source.get('kind')}, sha256 {str(source.get('sha256'))[:12]}] into {run_dir}")
