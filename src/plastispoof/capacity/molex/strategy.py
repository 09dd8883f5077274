"""The registered ``molex`` transform (wrap the SSL encoder's linear layers, or add experts) and strategy."""

from __future__ import annotations

import torch
from torch import nn

from plastispoof.capacity.base import OptionsTransform, Stage, Strategy
from plastispoof.capacity.lora import find_target_linears, freeze_for_adapters, has_targets
from plastispoof.capacity.molex.config import MoLExOptions, MoLExStrategyOptions
from plastispoof.capacity.molex.layer import MoLExLinear, molex_layers
from plastispoof.errors import InputError
from plastispoof.models.base import get_module, set_module
from plastispoof.registry import STRATEGIES, TRANSFORMS


@TRANSFORMS.register("molex")
class MoLExTransform(OptionsTransform):
    """Wrap the SSL encoder's targeted linear layers with :class:`MoLExLinear` (or add experts to them)."""

    kind = "molex"
    Options = MoLExOptions

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        opts = self.options
        existing = molex_layers(model)
        if opts.add_experts and not existing:
            raise InputError("molex add_experts needs a model that already has MoLEx experts "
                             "(set baseline_run to a finished MoLEx run)")
        if not opts.add_experts and existing:
            raise InputError("the model already has MoLEx experts; set add_experts to add more")
        if not opts.add_experts:
            for path in find_target_linears(model, opts.targets):
                set_module(model, path, MoLExLinear(get_module(model, path), opts.num_experts, opts.rank,
                                                    opts.alpha, opts.top_k, opts.routing, generator))
        freeze_for_adapters(model, opts.train_head)
        for _, layer in molex_layers(model):
            trainable = layer.add_experts(opts.add_experts, generator) if opts.add_experts else layer.experts
            for module in [*trainable, layer.router]:
                module.requires_grad_(True)
            layer.orth_weight, layer.balance_weight = opts.orth_weight, opts.balance_weight
        return model


@STRATEGIES.register("molex")
class MoLExStrategy(Strategy):
    """Train a mixture of LoRA experts in a frozen SSL encoder, or add experts to a finished MoLEx run."""

    name = "molex"
    Options = MoLExStrategyOptions

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        return has_targets(model, MoLExOptions().targets)

    def stages(self, epochs: int) -> list[Stage]:
        transform = MoLExTransform.from_strategy(self.options)
        name = "molex-adapt" if transform.options.add_experts else "molex"
        return [Stage(name, epochs, [transform], init_from=self.options.baseline_run)]
