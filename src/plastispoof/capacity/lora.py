"""LoRA on the linear layers of a frozen SSL encoder, built on HF peft.

The adapters are injected in place with :func:`peft.inject_adapter_in_model`, so the model keeps its own
class (a :class:`~plastispoof.models.base.SpoofModel`), its ``forward`` and a plain state_dict that
safetensors can save: each targeted ``nn.Linear`` becomes a peft ``lora.Linear`` holding the original layer
as ``base_layer`` next to ``lora_A`` / ``lora_B``. :func:`merge_lora` folds the adapters back into the base
weights for export and leaves a model with no peft modules at all.

The helpers :func:`ssl_encoders`, :func:`find_target_linears` and :func:`freeze_for_adapters` say what "the
frozen SSL encoder" and "the head" are for every adapter method (MoLEx uses them too): the encoder is any
transformers ``PreTrainedModel`` inside the model (wav2vec2, HuBERT, WavLM, ...), the head is every parameter
outside it (pooling, back-end, classifier). Targets are matched by the last component of a module's name, so
``q_proj`` means every ``*.q_proj`` linear layer of the encoder.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from pydantic import Field
from torch import nn

from plastispoof.capacity.base import OptionsTransform, PlainTransform, Stage, Strategy, StrategyOptions
from plastispoof.errors import InputError, summarise
from plastispoof.models.base import set_module
from plastispoof.registry import STRATEGIES, TRANSFORMS

# Attention modules that hand their projection weights straight to ``F.multi_head_attention_forward`` and
# never call the projection modules: an adapter wrapped around those layers would be silently skipped.
_WEIGHTS_READ_DIRECTLY = {"WavLMAttention": {"q_proj", "k_proj", "v_proj", "out_proj"}}


def ssl_encoders(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost transformers ``PreTrainedModel`` submodules of ``model`` as ``(path, module)``."""
    from transformers import PreTrainedModel

    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        inside_found = any(path == "" or name.startswith(path + ".") for path, _ in found)
        if isinstance(module, PreTrainedModel) and not inside_found:
            found.append((name, module))
    if not found:
        raise InputError(f"{type(model).__name__} holds no transformers SSL encoder (wav2vec2, HuBERT, WavLM, ...); "
                         "adapter methods need one")
    return found


def _refuse_gradient_free_encoders(model: nn.Module, encoders: list[tuple[str, nn.Module]]) -> None:
    """A front-end built with ``freeze=True`` (``models/ssl.py``) runs its encoder under ``no_grad``: adapters
    inside it would never receive a gradient, so say so instead of training nothing."""
    for name, module in model.named_modules():
        if getattr(module, "freeze", None) is True and any(m is e for m in module.modules() for _, e in encoders):
            raise InputError(f"{name or 'the model'} runs its SSL encoder without gradients (freeze: true); set "
                             "freeze: false, adapter methods freeze the encoder's own weights themselves")


def find_target_linears(model: nn.Module, targets: list[str]) -> list[str]:
    """Dotted paths of the ``nn.Linear`` layers inside the SSL encoder(s) whose last name is in ``targets``."""
    encoders = ssl_encoders(model)
    _refuse_gradient_free_encoders(model, encoders)
    wanted = set(targets)
    paths: list[str] = []
    available: set[str] = set()
    for prefix, encoder in encoders:
        for name, module in encoder.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            parent_name, _, leaf = name.rpartition(".")
            available.add(leaf)
            if leaf not in wanted:
                continue
            parent = encoder.get_submodule(parent_name)
            if leaf in _WEIGHTS_READ_DIRECTLY.get(type(parent).__name__, ()):
                raise InputError(f"{type(parent).__name__} reads the weights of {leaf} directly, so an adapter there "
                                 "would be ignored; target the feed-forward layers (intermediate_dense, "
                                 "output_dense) instead")
            paths.append(f"{prefix}.{name}" if prefix else name)
    missing = sorted(wanted - available)
    if missing:
        raise InputError(f"{summarise(missing, 'target layer names not found in the SSL encoder')}; "
                         f"its linear layers are named: {', '.join(sorted(available))}")
    return paths


def has_targets(model: nn.Module, targets: list[str]) -> bool:
    """Whether ``model`` holds an SSL encoder with every one of the ``targets`` (for ``Strategy.applies_to``)."""
    try:
        find_target_linears(model, targets)
    except InputError:
        return False
    return True


def freeze_for_adapters(model: nn.Module, train_head: bool) -> None:
    """Freeze the SSL encoder(s), CNN feature encoder included; the head trains when ``train_head``.

    ``freeze_feature_encoder()`` is called where the encoder has it, so the CNN also skips building a graph.
    Call it after adding the adapters, then set the adapter parameters trainable.
    """
    encoders = ssl_encoders(model)
    backbone = {id(p) for _, encoder in encoders for p in encoder.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad = train_head and id(parameter) not in backbone
    for _, encoder in encoders:
        if hasattr(encoder, "freeze_feature_encoder"):
            encoder.freeze_feature_encoder()


@contextlib.contextmanager
def seeded_from(generator: torch.Generator | None) -> Iterator[None]:
    """Draw the global RNG from ``generator`` inside the block (for libraries that take no generator)."""
    if generator is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        yield


class LoraOptions(StrategyOptions):
    """What the ``lora`` transform injects."""

    target_modules: list[str] = Field(["q_proj", "v_proj"], min_length=1,
                                      description="last names of the SSL encoder's linear layers to adapt")
    r: int = Field(8, gt=0, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    train_head: bool = Field(True, description="train the parameters outside the SSL encoder")


@TRANSFORMS.register("lora")
class LoraTransform(OptionsTransform):
    """Freeze the SSL encoder and inject peft LoRA adapters into its targeted linear layers."""

    kind = "lora"
    Options = LoraOptions

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.lora import LoraLayer

        if any(isinstance(module, LoraLayer) for module in model.modules()):
            raise InputError("the model already has LoRA adapters")
        paths = find_target_linears(model, self.options.target_modules)
        config = LoraConfig(target_modules=paths, r=self.options.r, lora_alpha=self.options.alpha,
                            lora_dropout=self.options.dropout, bias="none")
        with seeded_from(generator):
            inject_adapter_in_model(config, model)
        freeze_for_adapters(model, self.options.train_head)
        for name, parameter in model.named_parameters():
            if ".lora_" in name:
                parameter.requires_grad = True
        return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base weight and put the plain base layer back in its place.

    Returns the same model object (same class, no peft modules left), whose outputs match the adapted model's
    up to float rounding, so its state_dict loads into the model as built.
    """
    from peft.tuners.lora import LoraLayer

    adapted = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    if not adapted:
        raise InputError(f"{type(model).__name__} has no LoRA adapters to merge")
    for name, module in adapted:
        module.merge()
        set_module(model, name, module.get_base_layer())
    if hasattr(model, "peft_config"):  # left on the model by peft's injection
        del model.peft_config
    return model


@TRANSFORMS.register("lora-merge")
class LoraMergeTransform(PlainTransform):
    """Export step: :func:`merge_lora`."""

    kind = "lora-merge"

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        return merge_lora(model)


class LoraStrategyOptions(LoraOptions):
    baseline_run: str | None = Field(None, description="start from this finished run's weights (else the model "
                                                       "as built, pretrained when its config names weights)")
    merge: bool = Field(False, description="fold the adapters into the base weights after training")


@STRATEGIES.register("lora")
class LoraStrategy(Strategy):
    """Train LoRA adapters (and the head) on a frozen SSL encoder; optionally merge them for export."""

    name = "lora"
    Options = LoraStrategyOptions
    reported_stage = 0

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        return has_targets(model, LoraOptions().target_modules)

    def stages(self, epochs: int) -> list[Stage]:
        stages = [Stage("lora", epochs, [LoraTransform.from_strategy(self.options)],
                        init_from=self.options.baseline_run)]
        if self.options.merge:
            stages.append(Stage("merge", 0, [LoraMergeTransform()]))
        return stages
