"""Layer surgery shared by growing, pruning and shrinking: the widths of Linear, Conv, norm and GRU layers.

A growth site (:class:`~plastispoof.models.base.GrowthSite`) is a set of layers that change width together:
its producers' outputs and its norms' channels, and its consumers' inputs (:func:`site_layers`). Growing
(:mod:`plastispoof.capacity.growth`) widens them through wrappers; shrinking (dynamic widths) narrows them to
their first channels (:func:`narrow_site`); pruning and the final shrink put plain layers back in place of
wrappers (:func:`replace_wrappers`). All of them agree on three layouts:

* a layer's outputs are the rows of its weight (dimension 0) and its inputs the columns (dimension 1);
* an ``nn.GRU`` stacks the rows of its reset, update and new gates, so a unit has one row in each of the three
  blocks (:func:`gate_blocks`): units are added or removed within every block, never at the end of the stack;
* an attention site's producers are its ``q_proj``, ``k_proj`` and ``v_proj`` (:func:`site_producers`).

>>> layer = nn.GRU(4, 5)
>>> narrow = keep_outputs(layer, 2)
>>> narrow.hidden_size, tuple(narrow.weight_ih_l0.shape), tuple(narrow.weight_hh_l0.shape)
(2, (6, 4), (6, 2))
>>> torch.equal(gate_blocks(narrow.weight_ih_l0)[1], gate_blocks(layer.weight_ih_l0)[1, :2])  # update gate
True
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import nn

from plastispoof.models.base import GrowthSite, get_module, set_module

GRU_GATES = 3  # nn.GRU stacks its reset, update and new-gate rows
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj")
Side = Literal["outputs", "inputs"]


# ------------------------------------------------------------------------------------------ wrappers


class LayerWrapper(nn.Module):
    """A module standing in for a plain layer (``base``), e.g. while neurons are added or widths are learnt."""

    base: nn.Module

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base


def unwrap(module: nn.Module) -> nn.Module:
    """The plain layer inside a wrapper, or the module itself."""
    return module.base if isinstance(module, LayerWrapper) else module


def change_layer(model: nn.Module, path: str, change: Callable[[nn.Module], nn.Module]) -> None:
    """Replace the plain layer at ``path`` by ``change(layer)``, inside its wrapper when it has one."""
    module = get_module(model, path)
    if isinstance(module, LayerWrapper):
        module.base = change(module.base)
    else:
        set_module(model, path, change(module))


def replace_wrappers(model: nn.Module, kind: type[LayerWrapper],
                     replacement: Callable[[LayerWrapper], nn.Module]) -> nn.Module:
    """Put ``replacement(wrapper)`` in place of every ``kind`` wrapper in ``model`` (in the wrapper's mode)."""
    wrappers = {path: module for path, module in model.named_modules() if isinstance(module, kind)}
    for path, wrapper in wrappers.items():
        set_module(model, path, replacement(wrapper).train(wrapper.training))
    return model


# ------------------------------------------------------------------------------------------ tensors


def parameter_copy(value: torch.Tensor, requires_grad: bool = True) -> nn.Parameter:
    """A new parameter holding a copy of ``value`` (outside any autograd graph)."""
    return nn.Parameter(value.detach().clone(), requires_grad=requires_grad)


def replace_parameter(module: nn.Module, name: str, value: torch.Tensor, requires_grad: bool | None = None) -> None:
    """Swap ``module.<name>`` (a parameter or buffer) for a copy of ``value``; a parameter keeps its
    ``requires_grad`` unless one is given."""
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        keep = old.requires_grad if requires_grad is None else requires_grad
        setattr(module, name, parameter_copy(value, keep))
    else:
        setattr(module, name, value.detach().clone())


def gate_blocks(tensor: torch.Tensor) -> torch.Tensor:
    """A GRU weight or bias as ``(3 gates, units, ...)`` (a view)."""
    return tensor.reshape(GRU_GATES, tensor.shape[0] // GRU_GATES, *tensor.shape[1:])


def keep_gate_rows(tensor: torch.Tensor, keep: int) -> torch.Tensor:
    """The rows of a GRU weight or bias that belong to its first ``keep`` units (in every gate)."""
    return gate_blocks(tensor)[:, :keep].reshape(GRU_GATES * keep, *tensor.shape[1:])


def interleave_gates(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Old units' rows then new units' rows, within every gate: ``[r_old; r_new; z_old; z_new; n_old; n_new]``."""
    return torch.cat([gate_blocks(old), gate_blocks(new)], dim=1).reshape(-1, *old.shape[1:])


# ------------------------------------------------------------------------------------------ layers


def output_width(module: nn.Module) -> int:
    """Output channels / features / hidden units of a plain layer."""
    if isinstance(module, nn.GRU):
        return module.hidden_size
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels
    raise TypeError(f"layer surgery does not support {type(module).__name__}")


def input_width(module: nn.Module) -> int:
    """Input channels / features of a plain Linear, Conv or GRU layer."""
    if isinstance(module, nn.GRU):
        return module.input_size
    return module.weight.shape[1] * getattr(module, "groups", 1)


def rebuilt(module: nn.Module, tensors: Mapping[str, torch.Tensor], requires_grad: bool | None = None) -> nn.Module:
    """A copy of a plain layer holding ``tensors`` (by parameter / buffer name) instead of its own, with its
    size attributes set from them; the rest (kernel, stride, eps, hooks' absence, ...) is the layer's own."""
    layer = copy.deepcopy(module)
    for name, value in tensors.items():
        replace_parameter(layer, name, value, requires_grad)
    if isinstance(layer, nn.GRU):
        layer.input_size, layer.hidden_size = layer.weight_ih_l0.shape[1], layer.weight_hh_l0.shape[1]
        layer.flatten_parameters()  # one contiguous weight buffer again, as cuDNN wants
    elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
        reference = layer.weight if layer.affine else layer.running_mean
        layer.num_features = reference.shape[0]
    elif isinstance(layer, nn.Linear):
        layer.out_features, layer.in_features = layer.weight.shape
    elif isinstance(layer, nn.modules.conv._ConvNd):
        layer.out_channels, layer.in_channels = layer.weight.shape[0], layer.weight.shape[1] * layer.groups
    else:
        raise TypeError(f"layer surgery does not support {type(module).__name__}")
    return layer


def keep_outputs(module: nn.Module, keep: int) -> nn.Module:
    """A copy of a plain layer with only its first ``keep`` output channels (hidden units, features)."""
    if isinstance(module, nn.GRU):
        tensors = {}
        for name in module._flat_weights_names:
            rows = keep_gate_rows(getattr(module, name), keep)
            tensors[name] = rows[:, :keep] if name.startswith("weight_hh") else rows
        return rebuilt(module, tensors)
    names = ("weight", "bias", "running_mean", "running_var")
    return rebuilt(module, {name: getattr(module, name)[:keep] for name in names
                            if getattr(module, name, None) is not None})


def keep_inputs(module: nn.Module, keep: int) -> nn.Module:
    """A copy of a plain Linear, Conv or GRU layer that reads only its first ``keep`` input channels."""
    name = "weight_ih_l0" if isinstance(module, nn.GRU) else "weight"
    return rebuilt(module, {name: getattr(module, name)[:, :keep]})


# ------------------------------------------------------------------------------------------ sites


def site_producers(site: GrowthSite) -> list[str]:
    """The layers whose outputs are the site's neurons (an attention site's three projections)."""
    if site.kind == "attention":
        return [f"{site.producer}.{name}" for name in ATTENTION_PROJECTIONS]
    return [site.producer]


def site_layers(site: GrowthSite) -> list[tuple[str, Side]]:
    """Every layer that changes width with ``site``, and on which side: producers and norms their outputs,
    consumers their inputs."""
    return [*((path, "outputs") for path in [*site_producers(site), *site.norms]),
            *((path, "inputs") for path in site.consumers)]


def narrow_site(model: nn.Module, site: GrowthSite, keep: int) -> None:
    """Keep the first ``keep`` neurons of ``site`` in every layer of it (inside wrappers, which stay)."""
    for path, side in site_layers(site):
        narrow = keep_outputs if side == "outputs" else keep_inputs
        change_layer(model, path, lambda layer, narrow=narrow: narrow(layer, keep))
