"""Neuron growth on a model's growth sites: layer wrappers that add neurons, and the operations on them.

A grown layer keeps its ORIGINAL module untouched inside a wrapper (``wrapper.base``) and holds the weights
of the added neurons as separate tensors next to it, the way peft keeps a LoRA adapter beside its base layer.
That split is what makes "frozen" training cheap: with ``requires_grad=False`` on the base weights autograd
never computes their weight gradients (a gradient mask would compute and then discard them).

For a layer with ``I`` inputs and ``O`` outputs that gained ``n_in`` inputs (it consumes a grown site) and
``n_out`` outputs (it produces one), the wider weight is the block matrix::

    [[ W (O x I)          in_extra  (O x n_in)     ]     old outputs
     [ out_extra (n_out x (I + n_in))              ]]    new outputs

so a grown layer computes exactly what a plain layer of width ``O + n_out`` would (:func:`materialise` builds
that plain layer), and :func:`prune_added` drops every extra tensor and puts ``base`` back, which gives the
original architecture with the updated original weights.

A GRU grows the same way on all four of its weight blocks (input and recurrent, per gate): new units read the
input and the whole hidden state; old units read the new units through ``in_extra``-like recurrent columns.
Multi-head attention grows by whole heads: ``q_proj``, ``k_proj`` and ``v_proj`` gain outputs in multiples of
the head size and ``out_proj`` gains the inputs, so an unchanged attention forward sees more heads of the same
size (same ``1/sqrt(head_dim)`` scaling) and each old head's scores are untouched.

>>> layer = nn.Linear(3, 2)
>>> grown = GrownLayer(layer)
>>> grown.grow_outputs(4, NeuronInit(generator=torch.Generator().manual_seed(0)))
>>> grown(torch.ones(5, 3)).shape
torch.Size([5, 6])
>>> grown.base is layer
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.capacity.surgery import (
    GRU_GATES,
    LayerWrapper,
    interleave_gates,
    output_width,
    parameter_copy,
    rebuilt,
    replace_wrappers,
    site_layers,
    site_producers,
    unwrap,
)
from plastispoof.errors import InputError
from plastispoof.models.base import GrowthSite, get_module, set_module

InitName = Literal["normal", "xavier"]
LayerChoice = Literal["random", "all", "last"]


@dataclass(frozen=True)
class NeuronInit:
    """How the weights of new neurons start.

    init: ``"normal"`` draws N(0, sigma^2) (the paper's Algorithm 1); ``"xavier"`` draws Xavier-uniform with the
        fans of the whole grown weight (what the authors' code used). Biases of new neurons start at 0.
    function_preserving: weights FROM new neurons TO old ones (a consumer's new input columns, old GRU units'
        recurrent columns for new units) start at 0, so the grown model computes exactly what it did before.
    generator: random source (the trainer's seeded generator); ``None`` uses torch's global one.
    """

    init: InitName = "normal"
    sigma: float = 0.02
    function_preserving: bool = False
    generator: torch.Generator | None = None

    def weight(self, shape: tuple[int, ...], fans: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """New weights of ``shape`` for a weight whose full grown (fan_in, fan_out) is ``fans``."""
        if self.init == "normal":
            values = torch.randn(shape, generator=self.generator) * self.sigma
        else:
            bound = math.sqrt(6.0 / (fans[0] + fans[1]))
            values = (torch.rand(shape, generator=self.generator) * 2 - 1) * bound
        return values.to(device=like.device, dtype=like.dtype)

    def outgoing(self, shape: tuple[int, ...], fans: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """Weights from new neurons to old ones: zero when preserving the function."""
        if self.function_preserving:
            return torch.zeros(shape, device=like.device, dtype=like.dtype)
        return self.weight(shape, fans, like)


class GrownModule(LayerWrapper):
    """Base of the wrappers: ``base`` is the original module; every other parameter belongs to added neurons."""

    def __init__(self, base: nn.Module):
        super().__init__(base)
        self.added_inputs = 0
        self.added_outputs = 0

    def grow_inputs(self, count: int, init: NeuronInit) -> None:
        raise TypeError(f"{type(self.base).__name__} cannot read new input neurons")

    def grow_outputs(self, count: int, init: NeuronInit) -> None:
        raise TypeError(f"{type(self.base).__name__} cannot produce new neurons")

    def added_parameters(self) -> list[nn.Parameter]:
        """The parameters of the added neurons (everything outside ``base``)."""
        return [p for name, p in self.named_parameters() if not name.startswith("base.")]

    def merged(self) -> nn.Module:
        """A plain module of the grown width computing the same function."""
        raise NotImplementedError


class GrownLayer(GrownModule):
    """A ``Linear`` or ``Conv1d``/``Conv2d`` (groups 1) with added input channels and/or output neurons.

    Features are the last dimension for ``Linear`` and dimension 1 for convolutions.
    """

    def __init__(self, base: nn.Linear | nn.Conv1d | nn.Conv2d):
        if not isinstance(base, nn.Linear) and base.groups != 1:
            raise TypeError(f"only plain (groups=1) convolutions can grow, not {base}")
        super().__init__(base)
        self.is_linear = isinstance(base, nn.Linear)
        self.feature_dim = -1 if self.is_linear else 1
        self.in_extra = nn.Parameter(self._weight_shaped(base.weight, rows=self.out_base, cols=0))
        self.out_extra = nn.Parameter(self._weight_shaped(base.weight, rows=0, cols=self.in_base))
        self.out_bias = nn.Parameter(base.bias.new_zeros(0)) if base.bias is not None else None

    @property
    def in_base(self) -> int:
        return self.base.weight.shape[1]

    @property
    def out_base(self) -> int:
        return self.base.weight.shape[0]

    @staticmethod
    def _weight_shaped(weight: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        return weight.new_zeros((rows, cols, *weight.shape[2:]))

    def _fans(self) -> tuple[int, int]:
        receptive = math.prod(self.base.weight.shape[2:])
        return ((self.in_base + self.added_inputs) * receptive, (self.out_base + self.added_outputs) * receptive)

    def grow_inputs(self, count: int, init: NeuronInit) -> None:
        self.added_inputs += count
        weight, fans = self.base.weight, self._fans()
        to_old = init.outgoing(tuple(self._weight_shaped(weight, self.out_base, count).shape), fans, weight)
        to_new = init.weight(tuple(self._weight_shaped(weight, self.added_outputs, count).shape), fans, weight)
        self.in_extra = parameter_copy(torch.cat([self.in_extra, to_old], dim=1))
        self.out_extra = parameter_copy(torch.cat([self.out_extra, to_new], dim=1))

    def grow_outputs(self, count: int, init: NeuronInit) -> None:
        self.added_outputs += count
        weight, fans = self.base.weight, self._fans()
        rows = init.weight(tuple(self._weight_shaped(weight, count, self.in_base + self.added_inputs).shape),
                           fans, weight)
        self.out_extra = parameter_copy(torch.cat([self.out_extra, rows], dim=0))
        if self.out_bias is not None:
            self.out_bias = parameter_copy(torch.cat([self.out_bias, self.out_bias.new_zeros(count)]))

    def full_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The grown layer's weight and bias as single tensors (differentiable w.r.t. every block)."""
        old_rows = torch.cat([self.base.weight, self.in_extra], dim=1)
        weight = torch.cat([old_rows, self.out_extra], dim=0)
        bias = None if self.base.bias is None else torch.cat([self.base.bias, self.out_bias])
        return weight, bias

    def _run(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.is_linear:
            return F.linear(x, weight, bias)
        return self.base._conv_forward(x, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.base.weight.requires_grad:
            # Everything trains: one op on the assembled weight is as fast as a plain wide layer.
            return self._run(x, *self.full_weight())
        # Frozen base: keep its op separate so autograd skips its weight gradient.
        old = x.narrow(self.feature_dim, 0, self.in_base) if self.added_inputs else x
        out = self.base(old)
        if self.added_inputs:
            new = x.narrow(self.feature_dim, self.in_base, self.added_inputs)
            out = out + self._run(new, self.in_extra, None)
        if self.added_outputs:
            out = torch.cat([out, self._run(x, self.out_extra, self.out_bias)], dim=self.feature_dim)
        return out

    def merged(self) -> nn.Module:
        weight, bias = self.full_weight()
        tensors = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        return rebuilt(self.base, tensors, requires_grad=True)


class GrownBatchNorm(GrownModule):
    """A ``BatchNorm1d``/``BatchNorm2d`` with its own norm over the new channels (gamma 1, beta 0, stats 0/1).

    Batch norm is per channel, so normalising old and new channels apart is exact, and the old channels'
    running statistics never see the new ones.
    """

    def __init__(self, base: nn.BatchNorm1d | nn.BatchNorm2d):
        super().__init__(base)
        self.extra: nn.Module | None = None

    def _new_norm(self, channels: int) -> nn.Module:
        base = self.base
        norm = type(base)(channels, eps=base.eps, momentum=base.momentum, affine=base.affine,
                          track_running_stats=base.track_running_stats)
        reference = base.weight if base.affine else base.running_mean
        return norm.to(device=reference.device, dtype=reference.dtype)

    def grow_outputs(self, count: int, init: NeuronInit) -> None:
        wider = self._new_norm(self.added_outputs + count)
        if self.extra is not None:
            keep = self.added_outputs
            wider_state = wider.state_dict()
            for key, value in self.extra.state_dict().items():
                if value.dim() == 1:
                    wider_state[key][:keep] = value
            wider.load_state_dict(wider_state)
        self.extra = wider
        self.added_outputs += count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = self.base.num_features
        old = self.base(x.narrow(1, 0, channels))
        new = self.extra(x.narrow(1, channels, self.added_outputs))
        return torch.cat([old, new], dim=1)

    def merged(self) -> nn.Module:
        base_state, extra_state = self.base.state_dict(), self.extra.state_dict()
        channels = {key: torch.cat([value, extra_state[key]]) for key, value in base_state.items() if value.dim() == 1}
        return rebuilt(self.base, channels, requires_grad=True)


class GrownGRU(GrownModule):
    """A single-layer unidirectional ``nn.GRU`` with added inputs and/or hidden units.

    Per gate the wider weights are the same block matrices as in :class:`GrownLayer`, for the input weights
    (inputs: old + new) and the recurrent weights (inputs: old + new hidden units). The recurrence needs every
    block in one call, so the forward assembles the wide weights and runs torch's fused GRU on them; the
    original tensors stay separate parameters (no gradient is stored for them when frozen).
    """

    def __init__(self, base: nn.GRU):
        if base.num_layers != 1 or base.bidirectional:
            raise TypeError(f"only single-layer unidirectional GRUs can grow, not {base}")
        super().__init__(base)
        hidden, inputs = base.hidden_size, base.input_size
        like = base.weight_ih_l0
        self.ih_in_extra = nn.Parameter(like.new_zeros(GRU_GATES * hidden, 0))  # old units <- new inputs
        self.hh_in_extra = nn.Parameter(like.new_zeros(GRU_GATES * hidden, 0))  # old units <- new units
        self.ih_out_extra = nn.Parameter(like.new_zeros(0, inputs))  # new units <- all inputs
        self.hh_out_extra = nn.Parameter(like.new_zeros(0, hidden))  # new units <- all units
        self.bias_ih_extra = nn.Parameter(like.new_zeros(0)) if base.bias else None
        self.bias_hh_extra = nn.Parameter(like.new_zeros(0)) if base.bias else None

    def _fans(self, recurrent: bool) -> tuple[int, int]:
        hidden = self.base.hidden_size + self.added_outputs
        inputs = hidden if recurrent else self.base.input_size + self.added_inputs
        return inputs, GRU_GATES * hidden

    def _add_rows(self, rows: torch.Tensor, new_rows: torch.Tensor) -> nn.Parameter:
        """Append ``new_rows`` (gate-major) to ``rows`` (gate-major): new units go last within every gate."""
        return parameter_copy(interleave_gates(rows, new_rows))

    def grow_inputs(self, count: int, init: NeuronInit) -> None:
        self.added_inputs += count
        like, fans = self.base.weight_ih_l0, self._fans(recurrent=False)
        to_old = init.outgoing((GRU_GATES * self.base.hidden_size, count), fans, like)
        to_new = init.weight((GRU_GATES * self.added_outputs, count), fans, like)
        self.ih_in_extra = parameter_copy(torch.cat([self.ih_in_extra, to_old], dim=1))
        self.ih_out_extra = parameter_copy(torch.cat([self.ih_out_extra, to_new], dim=1))

    def grow_outputs(self, count: int, init: NeuronInit) -> None:
        self.added_outputs += count
        like = self.base.weight_ih_l0
        hidden_fans, input_fans = self._fans(recurrent=True), self._fans(recurrent=False)
        to_old = init.outgoing((GRU_GATES * self.base.hidden_size, count), hidden_fans, like)
        self.hh_in_extra = parameter_copy(torch.cat([self.hh_in_extra, to_old], dim=1))
        earlier = self.added_outputs - count
        hh_rows = torch.cat([self.hh_out_extra, init.weight((GRU_GATES * earlier, count), hidden_fans, like)], dim=1)
        width = self.base.hidden_size + self.added_outputs
        self.hh_out_extra = self._add_rows(hh_rows, init.weight((GRU_GATES * count, width), hidden_fans, like))
        inputs = self.base.input_size + self.added_inputs
        new_input_rows = init.weight((GRU_GATES * count, inputs), input_fans, like)
        self.ih_out_extra = self._add_rows(self.ih_out_extra, new_input_rows)
        if self.base.bias:
            self.bias_ih_extra = self._add_rows(self.bias_ih_extra, like.new_zeros(GRU_GATES * count))
            self.bias_hh_extra = self._add_rows(self.bias_hh_extra, like.new_zeros(GRU_GATES * count))

    def full_weights(self) -> list[torch.Tensor]:
        """``[weight_ih, weight_hh(, bias_ih, bias_hh)]`` of the grown GRU, in ``nn.GRU``'s layout."""
        base = self.base
        weights = [
            interleave_gates(torch.cat([base.weight_ih_l0, self.ih_in_extra], dim=1), self.ih_out_extra),
            interleave_gates(torch.cat([base.weight_hh_l0, self.hh_in_extra], dim=1), self.hh_out_extra),
        ]
        if base.bias:
            weights += [interleave_gates(base.bias_ih_l0, self.bias_ih_extra),
                        interleave_gates(base.bias_hh_l0, self.bias_hh_extra)]
        return weights

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        base = self.base
        hidden = base.hidden_size + self.added_outputs
        if hx is None:
            batch = x.shape[0] if base.batch_first else x.shape[1]
            hx = x.new_zeros(1, batch, hidden)
        return torch.ops.aten.gru.input(x, hx, self.full_weights(), base.bias, 1, base.dropout, self.training,
                                        False, base.batch_first)

    def merged(self) -> nn.Module:
        return rebuilt(self.base, dict(zip(self.base._flat_weights_names, self.full_weights())), requires_grad=True)


def _wrap(model: nn.Module, path: str) -> GrownModule:
    """The wrapper at ``path``, creating it around the plain module there on first use."""
    module = get_module(model, path)
    if isinstance(module, GrownModule):
        return module
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        wrapper: GrownModule = GrownLayer(module)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        wrapper = GrownBatchNorm(module)
    elif isinstance(module, nn.GRU):
        wrapper = GrownGRU(module)
    else:
        raise TypeError(f"growth of {type(module).__name__} at {path!r} is not supported")
    set_module(model, path, wrapper)
    return wrapper


def site_width(model: nn.Module, site: GrowthSite) -> int:
    """How many neurons ``site`` has now (added ones included)."""
    module = get_module(model, site_producers(site)[0])
    added = module.added_outputs if isinstance(module, GrownModule) else 0
    return output_width(unwrap(module)) + added


def _head_size(model: nn.Module, site: GrowthSite) -> int:
    return int(getattr(get_module(model, site.producer), "head_dim", 1)) if site.kind == "attention" else 1


def resolve_count(model: nn.Module, site: GrowthSite, count: int | None = None, ratio: float | None = None) -> int:
    """Neurons to add at ``site``: ``count``, or ``ratio`` x its current width (default 1.0, the paper's).

    Attention grows by whole heads: a ratio is rounded to the nearest number of heads (at least one), a count
    must be a multiple of the head size.
    """
    step = _head_size(model, site)
    if count is not None:
        if count < 1 or count % step:
            raise InputError(f"growth site {site.name!r}: count {count} must be a positive multiple of {step}")
        return count
    ratio = 1.0 if ratio is None else ratio
    return max(1, round(ratio * site_width(model, site) / step)) * step


def grow_site(model: nn.Module, site: GrowthSite, count: int, init: NeuronInit) -> None:
    """Add ``count`` neurons at ``site``: producer outputs, norm channels and consumer inputs all widen."""
    if count % _head_size(model, site):
        raise InputError(f"growth site {site.name!r}: {count} is not a whole number of attention heads")
    for path, side in site_layers(site):
        wrapper = _wrap(model, path)
        (wrapper.grow_outputs if side == "outputs" else wrapper.grow_inputs)(count, init)


def select_sites(model: nn.Module, sites: list[str] | None = None, layers: LayerChoice = "random",
                 num_layers: int = 1, generator: torch.Generator | None = None) -> list[GrowthSite]:
    """The sites to grow, in model order: the named ``sites``, or ``layers`` of the model's sites.

    ``"random"``: ``num_layers`` sites drawn without replacement with ``generator`` (the paper's choice);
    ``"all"``: every site; ``"last"``: the ``num_layers`` deepest sites (earlier frozen layers then need no
    backward pass at all).
    """
    available = model.growth_sites()
    if not available:
        raise InputError(f"model {type(model).__name__} declares no growth sites")
    if sites is not None:
        chosen = {model.site(name).name for name in sites}
        return [site for site in available if site.name in chosen]
    if layers == "all":
        return available
    if not 1 <= num_layers <= len(available):
        raise InputError(f"num_layers {num_layers} is outside 1..{len(available)} (the model's growth sites)")
    if layers == "last":
        return available[-num_layers:]
    picked = torch.randperm(len(available), generator=generator)[:num_layers].tolist()
    return [available[index] for index in sorted(picked)]


def grown_modules(model: nn.Module) -> dict[str, GrownModule]:
    """Every growth wrapper in ``model`` by dotted path."""
    return {name: module for name, module in model.named_modules() if isinstance(module, GrownModule)}


def added_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every added neuron in ``model``."""
    return [p for wrapper in grown_modules(model).values() for p in wrapper.added_parameters()]


def classifier_head(model: nn.Module) -> nn.Module | None:
    """The layer producing the logits: the last ``Linear`` (possibly grown) with two outputs."""
    head = None
    for module in model.modules():
        layer = unwrap(module)
        if isinstance(layer, nn.Linear) and layer.out_features == 2:
            head = module
    return head


def freeze_original(model: nn.Module, train_head: bool = False) -> None:
    """Only the added neurons' connections train: every other parameter gets ``requires_grad=False``.

    ``train_head`` also trains the original weights of the logit layer (:func:`classifier_head`). The
    parameters switched off here are remembered, so :func:`prune_added` switches exactly those on again (a
    part the model itself keeps frozen, such as a wav2vec2 feature encoder, stays frozen).
    Batch-norm running statistics keep tracking batches in training mode: they are statistics, not weights,
    and the consumers' outputs they normalise change as the new neurons learn.
    """
    trainable = {id(p) for p in added_parameters(model)}
    head = classifier_head(model) if train_head else None
    if head is not None:
        trainable |= {id(p) for p in head.parameters()}
    switched_off = [p for p in model.parameters() if p.requires_grad and id(p) not in trainable]
    for parameter in switched_off:
        parameter.requires_grad_(False)
    model._frozen_by_dropin = [*getattr(model, "_frozen_by_dropin", []), *switched_off]


def prune_added(model: nn.Module) -> nn.Module:
    """Remove exactly the added neurons: every wrapper becomes its ``base`` again.

    The result is the original architecture (same class, same state_dict keys and shapes) with the original
    weights as they were trained while grown; parameters that :func:`freeze_original` froze train again.
    """
    if not grown_modules(model):
        raise InputError("prune-added: the model has no added neurons (was a dropin applied before?)")
    replace_wrappers(model, GrownModule, unwrap)
    for parameter in getattr(model, "_frozen_by_dropin", []):
        parameter.requires_grad_(True)
    model._frozen_by_dropin = []
    return model


def materialise(model: nn.Module) -> nn.Module:
    """Merge every wrapper into a plain module of the grown width (same outputs, wider state_dict shapes)."""
    return replace_wrappers(model, GrownModule, lambda wrapper: wrapper.merged())
