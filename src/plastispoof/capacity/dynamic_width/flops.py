"""Forward FLOPs as a differentiable function of the dynamic widths, and the penalty that holds them to kappa."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.capacity.dynamic_width.gate import DynamicWidth
from plastispoof.capacity.growth import site_width
from plastispoof.capacity.surgery import GRU_GATES, input_width, output_width, unwrap
from plastispoof.errors import InputError
from plastispoof.models.base import GrowthSite, get_module
from plastispoof.models.flops import count_flops

BUDGET_NAME = "dynamic_width_budget"  # attribute of the model holding its FlopBudget


@dataclass(frozen=True)
class LayerCost:
    """FLOPs of one layer as a function of its input and output widths.

    ``per_unit * n_in * n_out`` for convolutions and linear layers (``per_unit`` = 2 x kernel size x output
    positions), ``per_unit * n_out * (n_in + n_out)`` for a GRU (``per_unit`` = 2 x 3 gates x time steps: input
    and recurrent products). ``inputs`` / ``outputs`` are a fixed width or the name of the dynamic site that
    sets it. Counting follows :mod:`torch.utils.flop_counter` (2 FLOPs per multiply-accumulate, biases free).
    """

    path: str
    per_unit: float
    inputs: int | str
    outputs: int | str
    recurrent: bool = False

    def flops(self, widths: Mapping[str, Any]) -> Any:
        n_in = widths[self.inputs] if isinstance(self.inputs, str) else self.inputs
        n_out = widths[self.outputs] if isinstance(self.outputs, str) else self.outputs
        return self.per_unit * (n_in + n_out if self.recurrent else n_in) * n_out


@dataclass(frozen=True)
class FlopsModel:
    """Forward FLOPs of a whole model as a differentiable function of its dynamic widths.

    ``layers`` are the layers whose width depends on a dynamic site; ``fixed`` is everything else (front-end,
    stem, residual convs, ...), measured by :func:`plastispoof.models.flops.count_flops`; ``full`` the total at the
    original widths.
    """

    layers: tuple[LayerCost, ...]
    fixed: float
    full: float

    def __call__(self, widths: Mapping[str, Any]) -> Any:
        return self.fixed + sum(layer.flops(widths) for layer in self.layers)

    def ratio(self, widths: Mapping[str, Any]) -> Any:
        """FLOPs at ``widths`` as a fraction of the full model's."""
        return self(widths) / self.full

    @classmethod
    def trace(cls, model: nn.Module, sites: list[GrowthSite], num_samples: int) -> "FlopsModel":
        """Measure ``model`` (at its current, plain widths) on one utterance of ``num_samples`` samples."""
        roles: dict[str, dict[str, str]] = {}
        for site in sites:
            roles.setdefault(site.producer, {})["outputs"] = site.name
            for consumer in site.consumers:
                roles.setdefault(consumer, {})["inputs"] = site.name
        per_unit: dict[str, tuple[float, bool]] = {}

        def record(path: str):
            def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
                per_unit[path] = _per_unit(module, output)
            return hook

        modules = {path: unwrap(get_module(model, path)) for path in roles}
        handles = [module.register_forward_hook(record(path)) for path, module in modules.items()]
        reference = next(model.parameters())
        example = torch.randn(1, num_samples, generator=torch.Generator().manual_seed(0)).to(reference.device)
        was_training = model.training
        try:
            total = count_flops(model.eval(), example)
        finally:
            model.train(was_training)
            for handle in handles:
                handle.remove()
        layers = []
        for path, role in roles.items():
            if path not in per_unit:
                raise InputError(f"dynamic widths: layer {path!r} did not run in the model's forward pass")
            module = modules[path]
            factor, recurrent = per_unit[path]
            layers.append(LayerCost(path, factor, role.get("inputs", input_width(module)),
                                    role.get("outputs", output_width(module)), recurrent))
        full_widths = {site.name: site_width(model, site) for site in sites}
        dependent = sum(layer.flops(full_widths) for layer in layers)
        return cls(tuple(layers), float(total - dependent), float(total))


def project_widths(flops_model: FlopsModel, widths: Mapping[str, int], minimums: Mapping[str, int],
                   cap: float) -> tuple[dict[str, int], float]:
    """Scale integer ``widths`` down by one common factor until the model costs at most ``cap`` of its full FLOPs.

    Site ``s`` gets ``max(minimums[s], floor(t * widths[s]))`` with the largest ``t`` in ``[0, 1]`` that fits, so
    every site keeps its share of what it learnt. Returns the widths and ``t`` (1 when they already fit). When
    even the minimums cost more than ``cap`` they are returned with ``t = 0`` (callers refuse such a ``cap``
    up front: it is below the model's floor).

    >>> model = FlopsModel((LayerCost("a", 1.0, 10, "a"), LayerCost("b", 1.0, "a", "b")), fixed=0.0, full=200.0)
    >>> widths, scale = project_widths(model, {"a": 10, "b": 10}, {"a": 1, "b": 1}, cap=0.5)  # FLOPs 10a + ab
    >>> widths, model.ratio(widths)  # at a = b = 7 the model would cost 119 / 200
    ({'a': 6, 'b': 6}, 0.48)
    """
    def scaled(scale: float) -> dict[str, int]:
        return {name: max(minimums[name], min(width, math.floor(scale * width + 1e-9)))
                for name, width in widths.items()}

    def fits(scale: float) -> bool:
        return flops_model.ratio(scaled(scale)) <= cap

    if fits(1.0):
        return dict(widths), 1.0
    low, high = 0.0, 1.0  # fits(low) holds, or nothing does
    for _ in range(40):  # far finer than the steps 1 / width at which the integer widths change
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return scaled(low), low


def _per_unit(module: nn.Module, output: Any) -> tuple[float, bool]:
    """FLOPs per (input width x output width) of one call, and whether it is recurrent."""
    if isinstance(module, nn.GRU):
        sequence = output[0]
        steps = sequence.numel() // (sequence.shape[0 if module.batch_first else 1] * module.hidden_size)
        return 2.0 * GRU_GATES * steps, True
    if isinstance(module, nn.Linear):
        return 2.0 * output.numel() / module.out_features, False
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups != 1:
            raise InputError(f"dynamic widths need plain convolutions, not groups={module.groups}")
        positions = output.numel() / module.out_channels
        return 2.0 * math.prod(module.kernel_size) * positions, False
    raise InputError(f"dynamic widths cannot cost a {type(module).__name__}")


class FlopBudget(nn.Module):
    """The FLOPs penalty ``weight * relu(FLOPs(K) / FLOPs_full - kappa)``, summed into the loss by the trainer.

    Holds no parameters: it reads the gates' widths (kept as plain references, since the gates are already
    submodules of the model and must not be saved twice).
    """

    def __init__(self, flops_model: FlopsModel, gates: dict[str, DynamicWidth], kappa: float, weight: float):
        super().__init__()
        self.flops_model = flops_model
        self.kappa = kappa
        self.weight = weight
        object.__setattr__(self, "_gates", gates)

    def flops(self) -> torch.Tensor:
        return self.flops_model({name: gate.width() for name, gate in self._gates.items()})

    def ratio(self) -> torch.Tensor:
        """FLOPs now as a fraction of the original model's."""
        return self.flops() / self.flops_model.full

    def kept_ratio(self) -> float:
        """FLOPs fraction of the channels a shrink would keep now (``ceil(K)`` per site)."""
        return float(self.flops_model.ratio({name: gate.kept() for name, gate in self._gates.items()}))

    def auxiliary_loss(self) -> torch.Tensor:
        return self.weight * F.relu(self.ratio() - self.kappa)

    def extra_repr(self) -> str:
        return f"kappa={self.kappa}, weight={self.weight}, flops_ratio={self.ratio().item():.3f}"
