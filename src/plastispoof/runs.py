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
replay the recorded transforms, load the weights strictly. Every file is written atomically; during training,
:class:`RunRecorder` writes them (only on the main process) and :func:`adopt_run` turns a model into another
finished run's (a stage's ``init_from``).

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

from plastispoof import __version__
from plastispoof.capacity.base import apply_transforms
from plastispoof.config import dump_config, load_config
from plastispoof.errors import InputError, summarise
from plastispoof.fileio import atomic_dir, atomic_path, atomic_write_json, atomic_write_text
from plastispoof.models.base import build_model
from plastispoof.scoring import FIRST_CROP, WINDOW_MEAN

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
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run directory (no {CONFIG})")
    return load_config(path)


def load_run_model(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's final model: build the named model, replay its transforms, load its weights strictly.

    Returns ``(model in eval mode on CPU, meta)``.
    """
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


# ------------------------------------------------------------------------------------------- the recorder


def _flat_items(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flat_items(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def config_difference(stored, given) -> str | None:
    """First key whose value differs between two :class:`~plastispoof.config.ExperimentConfig` s, as
    ``key: stored -> given``."""
    old, new = _flat_items(stored.model_dump(mode="json")), _flat_items(given.model_dump(mode="json"))
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
    return None


def check_same_experiment(run_dir: Path, cfg) -> None:
    """Refuse to resume or reuse ``run_dir`` when it holds a run of another config (say, fewer epochs)."""
    if (run_dir / CONFIG).is_file():
        difference = config_difference(read_run_config(run_dir), cfg)
        if difference:
            raise InputError(f"{run_dir} holds a run of another config ({difference}); use the same config, or "
                             f"another run name or output folder")


class RunRecorder:
    """Writes a training run's directory (see the module notes) as the trainer goes; only the main process
    (``is_main``) writes, every process may ask."""

    def __init__(self, cfg, is_main: bool = True):

        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.is_main = is_main
        self.meta_base: dict[str, Any] = {}
        self._config_text = dump_config(cfg)

    def has_work(self, resume: bool) -> bool:
        """Check the run directory against ``resume``; False when the run has already finished."""
        run_dir = self.run_dir
        occupied = run_dir.is_dir() and any(run_dir.iterdir())
        if occupied and not resume:
            raise InputError(f"run directory {run_dir} already exists and is not empty; pass --resume to continue "
                             f"it, or choose another name (name: in the config, or --set name=...)")
        if resume:
            check_same_experiment(run_dir, self.cfg)
            if self.is_main and run_dir.is_dir():  # temp files of writes a kill interrupted (fileio.atomic_path)
                for stale in run_dir.rglob(".*.tmp*"):
                    stale.unlink(missing_ok=True)
        return not (resume and (run_dir / META).is_file() and read_meta(run_dir).get("finished"))

    def start(self) -> None:
        """A fresh run: its config, and an empty metrics log."""
        if self.is_main:
            atomic_write_text(self.run_dir / CONFIG, self._config_text)
            truncate_jsonl(self.run_dir / METRICS, 0)

    def describe(self, model: nn.Module, reported_stage: int | None, world_size: int) -> None:
        """What meta.json says of the run besides its progress: model, strategy, input, seed, provenance."""
        cfg, data = self.cfg, self.cfg.data
        # A model built from a pretrained folder stores that folder's architecture, so the run needs no folder.
        rebuild = model.rebuild_args()
        args = cfg.model.args if rebuild == model.config else rebuild
        self.meta_base = {"model": {"name": cfg.model.name, "args": args},
                          "strategy": {"name": cfg.strategy.name, "args": cfg.strategy.args,
                                       "reported_stage": reported_stage},
                          "input": {"num_samples": data.num_samples, "sample_rate": data.sample_rate},
                          "seed": cfg.seed, "world_size": world_size,
                          "versions": environment_versions(), "git_commit": git_commit()}

    def log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            append_jsonl(self.run_dir / METRICS, record)

    def truncate_log(self, lines: int) -> None:
        """Drop what a killed run logged after its last checkpoint."""
        if self.is_main:
            truncate_jsonl(self.run_dir / METRICS, lines)

    def save_best(self, model: nn.Module, index: int, stage: str) -> str:
        """The stage's best weights so far; returns their path relative to the run directory."""
        path = stage_dir(self.run_dir, index, stage) / MODEL
        if self.is_main:
            save_weights(model.state_dict(), path)
        return str(path.relative_to(self.run_dir))

    def load(self, model: nn.Module, relative: str) -> None:
        load_state_strict(model, read_weights(self.run_dir / relative), str(self.run_dir / relative))

    def save_stage(self, model: nn.Module, index: int, summary: dict[str, Any]) -> None:
        if self.is_main:
            directory = stage_dir(self.run_dir, index, summary["name"])
            save_weights(model.state_dict(), directory / MODEL)
            atomic_write_json(directory / "summary.json", summary)

    def checkpoint(self, model: nn.Module, state: dict[str, Any]) -> None:
        if self.is_main:
            save_checkpoint(self.run_dir, model.state_dict(), state)

    def write_meta(self, transforms: list[dict[str, Any]], stages: list[dict[str, Any]], finished: bool,
                   window_mean_threshold: float | None = None) -> None:

        if not self.is_main:
            return
        last = stages[-1]
        # dev_threshold stays the first-crop one (model selection uses it); dev_thresholds names each convention.
        thresholds = {FIRST_CROP: last["dev_threshold"]}
        if window_mean_threshold is not None:
            thresholds[WINDOW_MEAN] = window_mean_threshold
        write_meta(self.run_dir, {**self.meta_base, "transforms": transforms, "stages": stages,
                                  "params": last["params"], "trainable_params": last["trainable_params"],
                                  "dev_eer": last["dev_eer"], "dev_threshold": last["dev_threshold"],
                                  "dev_threshold_convention": FIRST_CROP, "dev_thresholds": thresholds,
                                  "finished": finished})

    def finish(self, model: nn.Module, transforms: list[dict[str, Any]], stages: list[dict[str, Any]],
               window_mean_threshold: float | None) -> None:
        """The final weights and meta (the trainer adds the card and the training-curve plot)."""
        if not self.is_main:
            return
        save_weights(model.state_dict(), self.run_dir / MODEL)
        self.write_meta(transforms, stages, True, window_mean_threshold)


def adopt_run(model: nn.Module, run_dir: str | Path, transforms: list[dict[str, Any]], stage: str) -> nn.Module:
    """Turn ``model`` (transformed by ``transforms`` so far) into a finished run's model: replay the transforms
    that run has beyond ours (appending them to ``transforms``, so this run rebuilds too), then load its final
    weights strictly."""
    source = read_meta(run_dir).get("transforms", [])
    if source[:len(transforms)] != transforms:
        raise InputError(f"stage {stage!r}: init_from run {run_dir} was transformed differently from this model "
                         f"({len(source)} vs {len(transforms)} transforms); it cannot be loaded here")
    model = apply_transforms(model, source[len(transforms):])
    transforms.extend(source[len(transforms):])
    weights = Path(run_dir) / MODEL
    if not weights.is_file():
        raise InputError(f"stage {stage!r}: init_from run {run_dir} has not finished (no {MODEL})")
    load_state_strict(model, read_weights(weights), f"init_from {weights}")
    return model


def with_encoder_folders(model_args: dict[str, Any]) -> dict[str, Any]:
    """``model_args`` with every SSL ``pretrained`` that names a run directory replaced by a Hugging Face folder of
    that run's encoder (written once, into ``RUN/encoders/<kind>``): models read folders, never runs, so a model
    trained here feeds its encoder to any SSL back-end as a downloaded one would."""
    def resolve(section: dict[str, Any]) -> dict[str, Any]:
        pretrained = section.get("pretrained")
        if pretrained is None or not (Path(pretrained) / META).is_file():
            return section
        return {**section, "pretrained": str(ssl_encoder_folder(pretrained, section.get("kind", "wav2vec2")))}

    args = resolve(dict(model_args))
    if isinstance(args.get("frontend"), dict):
        args["frontend"] = resolve(args["frontend"])
    return args


def ssl_encoder_folder(run_dir: str | Path, kind: str) -> Path:
    """The Hugging Face folder of the ``kind`` encoder inside a finished run's model (written on first use)."""
    from plastispoof.models.ssl import plain_encoder  # transformers: only runs with an SSL encoder need it

    folder = Path(run_dir) / "encoders" / kind
    if (folder / "config.json").is_file():
        return folder
    model, meta = load_run_model(run_dir)
    encoder = plain_encoder(model, kind, f"run {run_dir} ({meta['model']['name']})")
    with atomic_dir(folder) as partial:
        encoder.save_pretrained(partial)
    return folder
