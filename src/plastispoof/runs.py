"""The run directory: what a training run leaves behind, and how a model is rebuilt from it.

::

    runs/<name>/
      config.yaml            the resolved experiment config
      model.safetensors      final weights
      meta.json              model name + constructor args, strategy, transform records, per-stage summaries,
                             dev threshold, versions, git commit, seed
      metrics.jsonl          one JSON object per epoch (and per evaluation)
      scores/  plots/        written by evaluation
      stages/<i>-<name>/     model.safetensors (the stage's best weights) and summary.json
      checkpoints/           last.safetensors + last.json: everything ``train(cfg, resume=True)`` needs

``meta.json`` + ``model.safetensors`` alone rebuild the model (:func:`load_run_model`): build the named model,
replay the recorded transforms, load the weights strictly. Every file is written atomically.

Training state that is not weights (optimizer, scaler, RNG states) is stored without pickle:
:func:`flatten_state` splits any nest of dicts/lists/tuples into a flat ``{name: tensor}`` dict (saved with
safetensors) and a JSON skeleton that names them.
"""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from plastispoof.errors import InputError, summarise
from plastispoof.fileio import atomic_path, atomic_write_json, atomic_write_text

CONFIG = "config.yaml"
MODEL = "model.safetensors"
META = "meta.json"
METRICS = "metrics.jsonl"
LAST = "checkpoints/last.safetensors"
LAST_JSON = "checkpoints/last.json"


def stage_dir(run_dir: Path, index: int, name: str) -> Path:
    """``stages/<index>-<name>``: where a stage keeps its best weights and summary."""
    return Path(run_dir) / "stages" / f"{index}-{name}"


# ---------------------------------------------------------------------------------------------- weights


def save_weights(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` as safetensors, atomically (copied to CPU; a tied tensor is stored under each name)."""
    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata=metadata)
    return Path(path)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated or foreign files
        raise InputError(f"{path} is not a readable safetensors file ({err})") from None


def load_state_strict(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model``; every name and shape must match, else :class:`InputError`.

    >>> a, b = nn.Linear(3, 2), nn.Linear(3, 4)
    >>> load_state_strict(a, nn.Linear(3, 2).state_dict(), "x.safetensors")
    >>> load_state_strict(b, a.state_dict(), "x.safetensors")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    plastispoof.errors.InputError: checkpoint is from another model: x.safetensors: 2 tensors of another shape, ...
    """
    expected = model.state_dict()
    problems = [
        ("missing tensors", [n for n in expected if n not in tensors]),
        ("unexpected tensors", [n for n in tensors if n not in expected]),
        ("tensors of another shape", [f"{n} {tuple(tensors[n].shape)} vs {tuple(t.shape)}"
                                       for n, t in expected.items() if n in tensors and tensors[n].shape != t.shape]),
    ]
    found = [summarise(names, what) for what, names in problems if names]
    if found:
        raise InputError(f"checkpoint is from another model: {source}: {'; '.join(found)}")
    model.load_state_dict(tensors, strict=True)


# ------------------------------------------------------------------------------------- state without pickle


def flatten_state(obj: Any, tensors: dict[str, torch.Tensor] | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nest of dicts/lists/tuples holding tensors, arrays and scalars into (JSON skeleton, tensors).

    >>> skeleton, tensors = flatten_state({"state": {0: {"step": torch.tensor(3.0)}}, "lr": (0.1, None)})
    >>> skeleton
    {'state': {'__items__': [[0, {'step': {'__tensor__': 't0'}}]]}, 'lr': {'__tuple__': [0.1, None]}}
    >>> unflatten_state(skeleton, tensors)["state"][0]["step"]
    tensor(3.)
    """
    tensors = {} if tensors is None else tensors
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj
        return {"__tensor__": name}, tensors
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}, tensors
    if isinstance(obj, np.generic):
        return obj.item(), tensors
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten_state(v, tensors)[0] for k, v in obj.items()}, tensors
        return {"__items__": [[flatten_state(k, tensors)[0], flatten_state(v, tensors)[0]]
                              for k, v in obj.items()]}, tensors
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, tensors)[0] for v in obj]}, tensors
    if isinstance(obj, list):
        return [flatten_state(v, tensors)[0] for v in obj], tensors
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj, tensors
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint without pickle")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if "__ndarray__" in skeleton:
        return np.asarray(skeleton["__ndarray__"], dtype=skeleton["dtype"])
    if "__tuple__" in skeleton:
        return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
    if "__items__" in skeleton:
        return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in skeleton["__items__"]}
    return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}


def save_checkpoint(run_dir: Path, model_state: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Write ``checkpoints/last.safetensors`` (weights + state tensors) and ``last.json`` (readable copy).

    The JSON skeleton also travels inside the safetensors metadata, and resuming reads it from there, so a kill
    between the two writes can never pair weights with another save's state.
    """
    skeleton, state_tensors = flatten_state(state)
    tensors = {f"model/{k}": v for k, v in model_state.items()}
    tensors.update({f"state/{k}": v for k, v in state_tensors.items()})
    text = json.dumps(skeleton)
    save_weights(tensors, Path(run_dir) / LAST, metadata={"state": text})
    atomic_write_text(Path(run_dir) / LAST_JSON, json.dumps(skeleton, indent=1) + "\n")


def load_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(model weights, training state)`` of the last checkpoint, or None when the run has none yet."""
    path = Path(run_dir) / LAST
    if not path.is_file():
        return None
    tensors = read_weights(path)
    with safe_open(str(path), framework="pt") as handle:
        text = (handle.metadata() or {}).get("state")
    if text is None:
        raise InputError(f"{path} holds no training state: it was not written by the trainer")
    skeleton = json.loads(text)
    model_state = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    state_tensors = {k.removeprefix("state/"): v for k, v in tensors.items() if k.startswith("state/")}
    return model_state, unflatten_state(skeleton, state_tensors)


# ------------------------------------------------------------------------------------------- run files


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line, atomically (the file is small: rewrite it whole)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    atomic_write_text(path, old + json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_jsonl(path: str | Path, lines: int) -> None:
    """Keep the first ``lines`` records (drop what a killed run logged after its last checkpoint)."""
    records = read_jsonl(path)
    if len(records) > lines:
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records[:lines]))


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / META
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run directory (no {META})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON (line {err.lineno})") from None


def write_meta(run_dir: str | Path, meta: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / META, meta)


def read_run_config(run_dir: str | Path):
    """The resolved :class:`~plastispoof.config.ExperimentConfig` stored in a run directory."""
    from plastispoof.config import load_config

    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run directory (no {CONFIG})")
    return load_config(path)


def load_run_model(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's final model: build the named model, replay its transforms, load its weights strictly.

    Returns ``(model in eval mode on CPU, meta)``.
    """
    from plastispoof.capacity.base import apply_transforms
    from plastispoof.models.base import build_model

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    if not isinstance(meta.get("model"), dict) or "name" not in meta["model"]:
        raise InputError(f"{run_dir / META} names no model (expected \"model\": {{\"name\": ..., \"args\": ...}})")
    if not (run_dir / MODEL).is_file():
        raise InputError(f"run {run_dir} has no {MODEL}: it has not finished training (resume it with --resume)")
    model = build_model(meta["model"]["name"], **meta["model"].get("args", {}))
    model = apply_transforms(model, meta.get("transforms", []))
    load_state_strict(model, read_weights(run_dir / MODEL), str(run_dir / MODEL))
    return model.eval(), meta


# ------------------------------------------------------------------------------------------- provenance


def environment_versions() -> dict[str, str | None]:
    """Versions of Python and of the libraries a run's numbers depend on (None = not installed)."""
    from plastispoof import __version__

    versions: dict[str, str | None] = {"python": platform.python_version(), "plastispoof": __version__}
    for package in ("torch", "transformers", "peft"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def git_commit() -> str | None:
    """The commit of the checkout the package runs from, or None (installed from a wheel, no git)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None
