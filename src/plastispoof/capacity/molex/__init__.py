"""MoLEx: a mixture of LoRA experts inside a frozen SSL encoder (Pan et al. 2025).

Every targeted linear layer of the encoder is wrapped by a :class:`MoLExLinear`: the frozen base layer, ``N``
LoRA experts and a router. For an input ``x`` (per token, or per utterance: the mean over time)::

    p = softmax(router(x))                      # N gate probabilities
    g = p restricted to its top-k, renormalised  # all N when top_k is None
    y = base(x) + (alpha / r) * sum_e g_e * B_e A_e x

``A_e`` (r x in) starts small and random, ``B_e`` (out x r) at zero, so a fresh wrapper computes exactly the base
layer. Only experts, routers and the head train; the encoder's own weights never change.

Two regularisers reach the trainer through ``auxiliary_loss()`` on each wrapped layer (summed over layers):

* orthogonality, weighted ``orth_weight``: the mean over expert pairs i != j of
  ``||A_i A_j^T||_F^2 / (||A_i||_F^2 ||A_j||_F^2)``, in [0, 1]; it keeps the experts' input subspaces apart and,
  being scale-free, cannot be met by shrinking the experts.
* load balance, weighted ``balance_weight`` (Switch-Transformer style): ``N * sum_e f_e * P_e`` with ``f_e`` the
  share of tokens whose top-1 expert is ``e`` and ``P_e`` the mean gate probability; 1 when usage is uniform.

Domain adaptation (``add_experts: K`` on a finished MoLEx run) appends ``K`` fresh experts to every wrapped
layer and widens the router (old rows kept, new rows random); the old experts stay frozen and bit-identical,
only the new experts, the routers (and the head, optionally) train.

Each wrapped layer keeps the gate statistics of its last forward in ``usage`` (detached, per utterance);
:func:`plastispoof.analysis.expert_usage.expert_usage_report` turns them into per-attack, per-layer tables and
heatmaps.

Modules: ``config`` (:class:`MoLExOptions`, :class:`MoLExStrategyOptions`), ``layer`` (:class:`LoraExpert`,
:class:`MoLExLinear`, :class:`GateUsage`, :func:`molex_layers`) and ``strategy`` (the registered
:class:`MoLExTransform` and :class:`MoLExStrategy`; importing this package registers them).
"""

from plastispoof.capacity.molex.config import MoLExOptions, MoLExStrategyOptions, Routing
from plastispoof.capacity.molex.layer import GateUsage, LoraExpert, MoLExLinear, molex_layers
from plastispoof.capacity.molex.strategy import MoLExStrategy, MoLExTransform

__all__ = ["GateUsage", "LoraExpert", "MoLExLinear", "MoLExOptions", "MoLExStrategy", "MoLExStrategyOptions",
           "MoLExTransform", "Routing", "molex_layers"]
