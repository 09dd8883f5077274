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
:func:`expert_usage_report` turns them into per-attack, per-layer tables and heatmaps.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from plastispoof.capacity.base import OptionsTransform, Stage, Strategy, StrategyOptions
from plastispoof.capacity.lora import find_target_linears, freeze_for_adapters, has_targets
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json, atomic_write_text
from plastispoof.models.base import get_module, set_module
from plastispoof.registry import STRATEGIES, TRANSFORMS

Routing = Literal["token", "utterance"]


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator | None,
             like: torch.Tensor) -> torch.Tensor:
    """U(-bound, bound) drawn on the CPU from ``generator`` (reproducible anywhere), then placed like ``like``."""
    values = (torch.rand(shape, generator=generator) * 2 - 1) * bound
    return values.to(device=like.device, dtype=like.dtype)


class LoraExpert(nn.Module):
    """One low-rank update ``B A``; ``B`` starts at zero, so a new expert changes nothing until it trains."""

    def __init__(self, base: nn.Linear, rank: int, generator: torch.Generator | None = None):
        super().__init__()
        self.lora_A = nn.Parameter(_uniform((rank, base.in_features), 1 / math.sqrt(base.in_features), generator,
                                            base.weight))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device,
                                               dtype=base.weight.dtype))


@dataclass
class GateUsage:
    """Gate statistics of one forward, per utterance: mean gate value and share of tokens where each expert
    had the highest probability. Both ``(batch, experts)``, detached."""

    mean_gate: torch.Tensor
    top1_share: torch.Tensor


def _per_utterance(values: torch.Tensor) -> torch.Tensor:
    """``(B, ..., N) -> (B, N)``: the mean over every axis between batch and experts (2-D input: one row each)."""
    return values.flatten(1, -2).mean(1) if values.dim() >= 3 else values


class MoLExLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a routed mixture of LoRA experts (see the module docstring).

    >>> base = nn.Linear(6, 4)
    >>> layer = MoLExLinear(base, num_experts=3, rank=2)
    >>> x = torch.randn(2, 5, 6)  # (batch, time, features)
    >>> torch.equal(layer(x), base(x))  # every B starts at zero
    True
    >>> layer.usage.mean_gate.shape  # gate statistics of that forward: per utterance, per expert
    torch.Size([2, 3])
    """

    def __init__(self, base: nn.Linear, num_experts: int = 4, rank: int = 8, alpha: float = 16.0,
                 top_k: int | None = None, routing: Routing = "token", generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        self.rank, self.scaling = rank, alpha / rank
        self.top_k, self.routing = top_k, routing
        self.experts = nn.ModuleList(LoraExpert(base, rank, generator) for _ in range(num_experts))
        self.router = self._new_router(num_experts, generator)
        # Set by the transform; plain attributes so that they stay out of the state_dict.
        self.orth_weight = 0.0
        self.balance_weight = 0.0
        self.usage: GateUsage | None = None
        self._router_probs: torch.Tensor | None = None  # kept only while the balance loss needs it

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def _new_router(self, num_experts: int, generator: torch.Generator | None) -> nn.Linear:
        weight = self.base.weight
        router = nn.Linear(self.base.in_features, num_experts, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            router.weight.copy_(_uniform(tuple(router.weight.shape), 1 / math.sqrt(self.base.in_features),
                                         generator, weight))
            router.bias.zero_()
        return router

    def add_experts(self, count: int, generator: torch.Generator | None = None) -> list[LoraExpert]:
        """Append ``count`` zero-output experts and widen the router, keeping its existing rows; returns them."""
        new = [LoraExpert(self.base, self.rank, generator) for _ in range(count)]
        self.experts.extend(new)
        router = self._new_router(self.num_experts, generator)
        old = self.router.out_features
        with torch.no_grad():
            router.weight[:old].copy_(self.router.weight)
            router.bias[:old].copy_(self.router.bias)
        self.router = router
        return new

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Gate values ``(..., N)``: one row per token, or per utterance (``(B, 1, N)``) with utterance routing."""
        if self.routing == "utterance" and x.dim() >= 3:
            x = x.mean(dim=tuple(range(1, x.dim() - 1)), keepdim=True)
        probs = torch.softmax(self.router(x).float(), dim=-1)
        gates = probs
        if self.top_k is not None and self.top_k < self.num_experts:
            top, index = probs.topk(self.top_k, dim=-1)
            gates = torch.zeros_like(probs).scatter(-1, index, top / top.sum(-1, keepdim=True))
        with torch.no_grad():
            top1 = F.one_hot(probs.argmax(-1), self.num_experts).to(probs.dtype)
            self.usage = GateUsage(_per_utterance(gates).detach(), _per_utterance(top1))
        needs_balance = self.training and self.balance_weight > 0 and torch.is_grad_enabled()
        self._router_probs = probs if needs_balance else None
        return gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gates(x).to(x.dtype)
        down = torch.cat([expert.lora_A for expert in self.experts])  # (N*r, in)
        up = torch.cat([expert.lora_B for expert in self.experts], dim=1)  # (out, N*r)
        # Weighting each expert's r hidden units by its gate before the up-projection sums the experts in one
        # matmul, without an (N, out) intermediate per token.
        hidden = F.linear(x, down).unflatten(-1, (self.num_experts, self.rank)) * gates.unsqueeze(-1)
        return self.base(x) + F.linear(hidden.flatten(-2), up) * self.scaling

    def orthogonality(self) -> torch.Tensor:
        """Mean over expert pairs of the normalised squared overlap ``||A_i A_j^T||_F^2`` (0 = orthogonal)."""
        n = self.num_experts
        down = torch.stack([expert.lora_A for expert in self.experts]).float()
        if n < 2:
            return down.new_zeros(())
        down = down / down.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
        pairs = torch.einsum("arc,bsc->abrs", down, down).pow(2).sum((2, 3))
        return (pairs.sum() - pairs.diagonal().sum()) / (n * (n - 1))

    def load_balance(self) -> torch.Tensor:
        """Switch-style ``N * sum_e f_e P_e`` of the last training forward (0 when none was kept)."""
        if self._router_probs is None:
            return self.router.weight.new_zeros((), dtype=torch.float32)
        probs = self._router_probs.reshape(-1, self.num_experts)
        share = F.one_hot(probs.argmax(-1), self.num_experts).to(probs.dtype).mean(0)
        return self.num_experts * (share * probs.mean(0)).sum()

    def auxiliary_loss(self) -> torch.Tensor:
        """``orth_weight * orthogonality + balance_weight * load_balance``; the trainer adds it to the loss."""
        loss = self.router.weight.new_zeros((), dtype=torch.float32)
        if self.orth_weight:
            loss = loss + self.orth_weight * self.orthogonality()
        if self.balance_weight:
            loss = loss + self.balance_weight * self.load_balance()
        return loss

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, rank={self.rank}, top_k={self.top_k}, routing={self.routing}"


def molex_layers(model: nn.Module) -> list[tuple[str, MoLExLinear]]:
    """Every :class:`MoLExLinear` in ``model`` as ``(path, layer)``, in module order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, MoLExLinear)]


class MoLExOptions(StrategyOptions):
    """What the ``molex`` transform builds. With ``add_experts`` the structure options come from the model."""

    num_experts: int = Field(4, gt=0, description="experts per wrapped layer")
    rank: int = Field(8, gt=0, description="rank of each LoRA expert")
    alpha: float = Field(16.0, gt=0, description="expert scaling numerator (scale = alpha / rank)")
    top_k: int | None = Field(None, gt=0, description="experts kept per token (renormalised); None = all")
    routing: Routing = Field("token", description="route each token, or each utterance (mean over time)")
    targets: list[str] = Field(["q_proj", "v_proj"], min_length=1,
                               description="last names of the SSL encoder's linear layers to wrap: q_proj, "
                                           "k_proj, v_proj, out_proj, intermediate_dense, output_dense")
    orth_weight: float = Field(0.01, ge=0, description="weight of the orthogonality regulariser (per layer)")
    balance_weight: float = Field(0.0, ge=0, description="weight of the load-balancing loss (per layer)")
    add_experts: int = Field(0, ge=0, description="on a MoLEx model: add this many experts per layer and "
                                                  "train only them, the routers and (optionally) the head")
    train_head: bool = Field(True, description="train the parameters outside the SSL encoder")

    @model_validator(mode="after")
    def _top_k_fits(self) -> "MoLExOptions":
        if self.top_k is not None and self.top_k > self.num_experts + self.add_experts:
            raise ValueError(f"top_k {self.top_k} exceeds the {self.num_experts + self.add_experts} experts")
        return self


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


class MoLExStrategyOptions(MoLExOptions):
    baseline_run: str | None = Field(None, description="start from this finished run's weights; with "
                                                       "add_experts it must be a MoLEx run")

    @model_validator(mode="after")
    def _adaptation_has_a_baseline(self) -> "MoLExStrategyOptions":
        if self.add_experts and not self.baseline_run:
            raise ValueError("add_experts needs baseline_run (a finished MoLEx run)")
        return self


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


# --------------------------------------------------------------------------------------------- expert usage


def _short_names(paths: list[str]) -> list[str]:
    """Layer paths without the dotted prefix they all share (``ssl.encoder.layers.3.attention.q_proj`` ->
    ``3.attention.q_proj``)."""
    parts = [path.split(".") for path in paths]
    shared = 0
    while all(len(p) > shared + 1 and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    return [".".join(p[shared:]) for p in parts]


@dataclass
class ExpertUsage:
    """Gate statistics summed per layer, attack and expert over a dataset (``utterances`` per attack)."""

    layers: list[str]
    attacks: list[str]
    utterances: np.ndarray  # (attacks,)
    gate_sum: np.ndarray  # (layers, attacks, experts)
    top1_sum: np.ndarray  # (layers, attacks, experts)

    @property
    def mean_gate(self) -> np.ndarray:
        return self.gate_sum / self.utterances[None, :, None]

    @property
    def top1_share(self) -> np.ndarray:
        return self.top1_sum / self.utterances[None, :, None]

    def as_json(self) -> dict[str, Any]:
        return {"layers": self.layers, "attacks": self.attacks, "experts": int(self.gate_sum.shape[2]),
                "utterances": dict(zip(self.attacks, self.utterances.tolist())),
                "mean_gate": self.mean_gate.tolist(), "top1_share": self.top1_share.tolist(),
                "mean_gate_over_layers": self.mean_gate.mean(0).tolist()}

    def as_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["layer", "attack", "expert", "utterances", "mean_gate", "top1_share"])
        rows = [(name, self.mean_gate[i], self.top1_share[i]) for i, name in enumerate(self.layers)]
        rows.append(("all", self.mean_gate.mean(0), self.top1_share.mean(0)))
        for layer, gate, top1 in rows:
            for a, attack in enumerate(self.attacks):
                for e in range(gate.shape[1]):
                    writer.writerow([layer, attack, e, int(self.utterances[a]), f"{gate[a, e]:.6f}",
                                     f"{top1[a, e]:.6f}"])
        return buffer.getvalue()

    def as_table(self) -> str:
        gate = self.mean_gate.mean(0)
        experts = [f"E{e}" for e in range(gate.shape[1])]
        width = max(8, *(len(a) for a in self.attacks))
        lines = [f"mean gate per expert over {len(self.layers)} MoLEx layers",
                 f"{'attack':<{width}} {'n':>6} " + " ".join(f"{e:>6}" for e in experts) + "  top-1"]
        for a, attack in enumerate(self.attacks):
            cells = " ".join(f"{g:6.3f}" for g in gate[a])
            lines.append(f"{attack:<{width}} {int(self.utterances[a]):>6} {cells}  {experts[int(gate[a].argmax())]}")
        return "\n".join(lines)


def collect_expert_usage(model: nn.Module, loader: Any, attacks_of_batch: Any) -> ExpertUsage:
    """Run ``model`` (eval mode, no gradients) over ``loader`` and sum each MoLEx layer's gate statistics per
    attack. ``loader`` yields ``(waveform, _, indices)``; ``attacks_of_batch(indices)`` names their attacks."""
    layers = molex_layers(model)
    if not layers:
        raise InputError("the model has no MoLEx experts (train it with strategy 'molex')")
    gate_sum: dict[str, np.ndarray] = {}
    top1_sum: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for waveform, _, indices in loader:
            model(waveform.to(device))
            gates = torch.stack([layer.usage.mean_gate for _, layer in layers], 1).double().cpu().numpy()
            top1 = torch.stack([layer.usage.top1_share for _, layer in layers], 1).double().cpu().numpy()
            for row, attack in enumerate(attacks_of_batch(indices)):  # rows: (layers, experts) each
                gate_sum[attack] = gate_sum.get(attack, 0.0) + gates[row]
                top1_sum[attack] = top1_sum.get(attack, 0.0) + top1[row]
                counts[attack] = counts.get(attack, 0) + 1
    attacks = sorted(counts, key=lambda a: (a != "bonafide", a))
    return ExpertUsage(layers=_short_names([name for name, _ in layers]), attacks=attacks,
                       utterances=np.array([counts[a] for a in attacks], dtype=float),
                       gate_sum=np.stack([gate_sum[a] for a in attacks], 1),
                       top1_sum=np.stack([top1_sum[a] for a in attacks], 1))


def plot_expert_usage(usage: ExpertUsage, path: str | Path, title: str = "") -> Path:
    """Heatmaps of mean gate (attacks x experts): averaged over layers first, then one panel per layer."""
    from matplotlib.figure import Figure

    from plastispoof.plots import save_figure

    panels = [("all layers", usage.mean_gate.mean(0))] + list(zip(usage.layers, usage.mean_gate))
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    experts, attacks = usage.gate_sum.shape[2], len(usage.attacks)
    figure = Figure(figsize=(columns * (1.2 + 0.45 * experts), rows * (0.9 + 0.3 * attacks)), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, values) in zip(axes.flat, panels):
        image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_title(name, fontsize=8)
        ax.set_xticks(range(experts), [f"E{e}" for e in range(experts)], fontsize=7)
        ax.set_yticks(range(attacks), usage.attacks, fontsize=7)
    figure.colorbar(image, ax=axes, shrink=0.6, label="mean gate")
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def expert_usage_report(run_dir: str | Path, dataset: str, root: str | Path, subset: str = "eval") -> str:
    """Expert usage of a MoLEx run on ``subset`` of ``dataset``: mean gate and top-1 share per expert, per attack
    (bona fide included) and per layer.

    Uses the run's input length, evaluation batch size and ``data.max_eval`` like ``evaluate``. Writes
    ``<run>/reports/experts-<dataset>-<subset>.{csv,json,png}`` and returns a printable table.
    """
    from torch.utils.data import DataLoader

    from plastispoof.data.dataset import TrialDataset
    from plastispoof.evaluate import load_run_and_trials

    run_dir = Path(run_dir)
    cfg, model, _, trials = load_run_and_trials(run_dir, dataset, root, subset)
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    loader = DataLoader(TrialDataset(trials, num_samples=cfg.data.num_samples, sample_rate=cfg.data.sample_rate),
                        batch_size=cfg.data.eval_batch_size, num_workers=cfg.data.num_workers)
    # Bona fide trials carry attack "-"; spoofs without an attack id (Fake-or-Real, In-the-Wild) pool as "spoof".
    attack_of = ["bonafide" if t.label == "bonafide" else t.attack if t.attack not in ("", "-") else "spoof"
                 for t in trials]
    try:
        usage = collect_expert_usage(model, loader, lambda indices: [attack_of[i] for i in indices.tolist()])
    except InputError as err:
        raise InputError(f"run {run_dir}: {err}") from None

    files = {suffix: run_dir / "reports" / f"experts-{dataset}-{subset}.{suffix}" for suffix in ("csv", "json", "png")}
    atomic_write_text(files["csv"], usage.as_csv())
    atomic_write_json(files["json"], {"run": str(run_dir), "dataset": dataset, "subset": subset, **usage.as_json()})
    plot_expert_usage(usage, files["png"], title=f"{run_dir.name}: {dataset} {subset}")
    return f"{usage.as_table()}\nwrote {', '.join(str(path) for path in files.values())}"
