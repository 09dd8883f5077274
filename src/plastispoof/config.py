"""Experiment configuration: pydantic models, YAML files and ``--set a.b=c`` overrides.

Every section forbids unknown keys, so a typo fails with an :class:`InputError` naming the key path.

>>> cfg = ExperimentConfig.model_validate({"model": {"name": "grnn"}})
>>> cfg.seed, cfg.train.optimizer, cfg.data.num_samples
(42, 'adam', 64600)
>>> apply_overrides(cfg, ["train.lr=0.01", "model.args.hidden=[8, 8]"]).train.lr
0.01
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from plastispoof.augment.config import AugmentList
from plastispoof.errors import InputError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(Section):
    dataset: str = Field("synthetic", description="protocol reader name (see `plastispoof.data.protocols`)")
    root: str = Field("", description="corpus root directory")
    train_subset: str = "train"
    dev_subset: str = "dev"
    eval_subset: str = "eval"
    sample_rate: int = 16000
    num_samples: int = Field(64600, description="training crop / repeat-pad length in samples")
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 0
    max_train: int | None = Field(None, description="use at most this many training trials (seeded subset)")
    max_dev: int | None = None
    max_eval: int | None = None
    feature_cache: str | None = Field(None, description="directory for cached frozen-front-end features")
    feature_cache_dtype: Literal["float16", "float32"] = Field("float16", description="how cached features are "
                                                               "stored (float16: half the disk, scores move by "
                                                               "about 1e-3)")
    shards: str | None = Field(None, description="WebDataset shards of the corpus (plastispoof prepare --shards): "
                               "training reads its subset from them instead of the audio files")
    augment: AugmentList = Field(default_factory=list, description="augmentations of the training crops, in "
                                 "order, each with its probability p (see plastispoof.augment.config)")

    @model_validator(mode="after")
    def _augment_needs_audio(self) -> "DataConfig":
        if self.augment and self.feature_cache:
            raise ValueError("data.augment changes the audio of every epoch, so it cannot be combined with "
                             "data.feature_cache (features computed once)")
        if self.shards and (self.feature_cache or self.augment or self.max_train):
            raise ValueError("data.shards streams the whole training subset as stored: it cannot be combined with "
                             "data.feature_cache, data.augment or data.max_train")
        return self


class ModelConfig(Section):
    name: str = "resnet18"
    args: dict[str, Any] = Field(default_factory=dict, description="constructor arguments of the model")


class StrategyConfig(Section):
    name: str = "baseline"
    args: dict[str, Any] = Field(default_factory=dict, description="options of the strategy")


class TrainConfig(Section):
    epochs: int = Field(10, description="epochs per stage")
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: Literal["none", "cosine", "step"] = "cosine"
    step_size: int = 10
    gamma: float = 0.5
    warmup_steps: int = 0
    loss: Literal["ce", "hinge"] = "ce"
    class_weights: Literal["none", "balanced"] | list[float] = "balanced"
    grad_clip: float | None = 5.0
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    amp_dtype: Literal["float16", "bfloat16"] = Field("float16", description="what autocast computes in on CUDA: "
                                                      "bfloat16 (Ampere and newer) needs no loss scaling")
    channels_last: bool = Field(False, description="keep convolution weights (and so activations) in channels_last "
                                "memory format: faster with AMP on tensor-core GPUs for 2-D CNNs (ResNet)")
    early_stopping: int | None = Field(None, description="stop a stage after this many epochs without dev gain")
    select: Literal["best", "last"] = Field("best", description="weights a stage ends with: those of its lowest "
                                            "dev EER, or its last epoch's (a fixed budget: for a dev set too small "
                                            "to choose by, as in few-shot adaptation)")
    device: str = "auto"
    deterministic: bool = True
    max_steps_per_epoch: int | None = None
    log_every: int = 10

    @model_validator(mode="after")
    def _early_stopping_needs_best(self) -> "TrainConfig":
        if self.early_stopping and self.select == "last":
            raise ValueError("train.early_stopping stops when the dev EER stops improving, which train.select: "
                             "last ignores; use one or the other")
        return self


class ExperimentConfig(Section):
    name: str = "experiment"
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _validation_error_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key" + _did_you_mean([str(p) for p in first["loc"]])
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def _did_you_mean(location: list[str]) -> str:
    """``; did you mean 'lr'?`` for the closest field of the section an unknown key sits in (or nothing).

    >>> _did_you_mean(["train", "epoch"]), _did_you_mean(["train", "zzz"])
    ("; did you mean 'epochs'?", '')
    """
    section: type[BaseModel] = ExperimentConfig
    for part in location[:-1]:
        field = section.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        section = annotation
    close = difflib.get_close_matches(location[-1], list(section.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def validate(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise InputError(_validation_error_line(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file and apply ``key=value`` overrides."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config must be a mapping of sections")
    data.setdefault("name", path.stem)
    return apply_overrides(validate(data, str(path)), overrides or [])


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Return a copy of ``cfg`` with each ``a.b.c=value`` applied (values parsed as YAML)."""
    data = cfg.model_dump()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r} is not of the form key=value")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {} if part not in node else node[part]
                if not isinstance(node[part], dict):
                    raise InputError(f"override {item!r}: {part!r} is not a section")
            node = node[part]
        node[parts[-1]] = yaml.safe_load(raw)
    return validate(data, "--set")


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
