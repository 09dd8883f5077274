"""Noise-injection dynamic widths (Gómez & Bäckström 2026): learn layer widths and FLOPs jointly with SGD.

Every dynamic growth site gets a learnable continuous width ``K`` in ``[min_width, full_width]``
(:class:`DynamicWidth`, wrapped around the site's last module: its last norm, else its producer). With
``b = ceil(K) - 1`` and ``f = K - b`` in ``(0, 1]``:

* channels ``< b`` pass unchanged, channels ``> b`` are zero;
* the boundary channel ``b`` becomes ``sqrt(1 - lam) * x + sqrt(lam) * sigma_x * nu`` with ``nu ~ N(0, 1)``,
  ``sigma_x`` the channel's standard deviation over the batch and time/space (a statistic, not differentiated)
  and ``lam = cos^2(pi f / 2)``, i.e. signal weight ``sin(pi f / 2)``, noise weight ``cos(pi f / 2)``.
  The mix keeps the channel's variance, and the task loss reaches ``K`` through both weights: noise hurts, so
  the task pushes ``K`` up. (The paper's ``lam = 1 - frac(K)`` has the same end points; the sine/cosine pair
  keeps the gradient finite where ``f`` is 0 or 1, e.g. at the start, ``K = full_width``.)
* in eval mode there is no noise: the boundary channel is scaled by its signal weight ``sin(pi f / 2)`` (the
  noise's expectation is zero), so evaluation is deterministic.

A :class:`FlopBudget` (one per model, ``auxiliary_loss()`` hook) adds
``flops_weight * relu(FLOPs(K) / FLOPs_full - kappa)``: the FLOPs of the whole forward pass written as a
differentiable function of every continuous width (:class:`FlopsModel`), so the widths fall until the model
costs at most ``kappa`` of the original, where the task's pull balances them.

Every ``shrink_every`` epochs :class:`Shrink` physically removes channels ``>= ceil(K)`` from the producer, the
norms and the consumers (``K`` is kept). The last shrink also folds each boundary channel's signal weight into
the weights and removes the wrappers, so the final model is a plain, smaller instance of the same class. The
``dynamic-width`` and ``shrink`` records in ``meta.json`` replay that shape on a freshly built model.

Modules: :mod:`~.gate` (the gate and finding it in a model), :mod:`~.flops` (the FLOPs model and the penalty),
:mod:`~.transforms` (``dynamic-width`` and ``shrink``), :mod:`~.strategy` (the ``dynamic-width`` strategy); the
channel slicing itself is :mod:`plastispoof.capacity.surgery`, shared with growth and pruning.
"""

# Importing the transforms and the strategy registers them (plastispoof.registry imports this package).
from plastispoof.capacity.dynamic_width.flops import BUDGET_NAME, FlopBudget, FlopsModel, LayerCost
from plastispoof.capacity.dynamic_width.gate import (
                                                     DYNAMIC_KINDS,
                                                     DynamicWidth,
                                                     can_shrink,
                                                     dynamic_sites,
                                                     dynamic_widths,
                                                     gated_path,
)
from plastispoof.capacity.dynamic_width.strategy import DynamicWidthOptions, DynamicWidthStrategy
from plastispoof.capacity.dynamic_width.transforms import DynamicWidthSettings, MakeWidthsDynamic, Shrink, fold_gate

__all__ = ["BUDGET_NAME", "DYNAMIC_KINDS", "DynamicWidth", "DynamicWidthOptions", "DynamicWidthSettings",
           "DynamicWidthStrategy", "FlopBudget", "FlopsModel", "LayerCost", "MakeWidthsDynamic", "Shrink",
           "can_shrink", "dynamic_sites", "dynamic_widths", "fold_gate", "gated_path"]
