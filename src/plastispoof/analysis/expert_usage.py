"""Expert usage of a finished MoLEx run: per attack (bona fide included) and per layer, the mean gate and the
share of tokens each expert wins, as a table, CSV, JSON and heatmaps (``plastispoof experts``).

It reads the gate statistics that every :class:`~plastispoof.capacity.molex.MoLExLinear` keeps from its last
forward (``usage``), summed over an evaluation subset.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from plastispoof.capacity.molex import molex_layers
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json, atomic_write_text


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

    @property
    def attack_information(self) -> np.ndarray:
        """Per layer, the mutual information (bits) between an utterance's class (bona fide, or its attack) and
        the expert that wins a token: 0 when every class spreads its tokens over the experts alike, at most
        ``log2(experts)`` (every class has experts of its own). It answers "do experts specialise by attack?"
        whichever expert is which; classes weigh by their utterances.

        >>> alike = ExpertUsage(["l"], ["bonafide", "A01"], np.array([2.0, 2.0]), np.ones((1, 2, 2)),
        ...                     np.ones((1, 2, 2)))
        >>> apart = ExpertUsage(["l"], ["bonafide", "A01"], np.array([1.0, 1.0]), np.ones((1, 2, 2)),
        ...                     np.array([[[1.0, 0.0], [0.0, 1.0]]]))
        >>> float(alike.attack_information[0]), float(apart.attack_information[0])
        (0.0, 1.0)
        """
        p_class = self.utterances / self.utterances.sum()
        p_expert_given_class = self.top1_share / self.top1_share.sum(2, keepdims=True)  # (layers, classes, experts)
        p_expert = np.einsum("a,lae->le", p_class, p_expert_given_class)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 log 0 = 0
            terms = np.nan_to_num(p_expert_given_class * np.log2(p_expert_given_class / p_expert[:, None, :]))
        return np.einsum("a,lae->l", p_class, terms)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ExpertUsage":
        """Back from :meth:`as_json` (a report's ``experts-*.json``), e.g. to compare runs without scoring again."""
        utterances = np.array([data["utterances"][attack] for attack in data["attacks"]], dtype=float)
        return cls(list(data["layers"]), list(data["attacks"]), utterances,
                   np.asarray(data["mean_gate"]) * utterances[None, :, None],
                   np.asarray(data["top1_share"]) * utterances[None, :, None])

    def as_json(self) -> dict[str, Any]:
        return {"layers": self.layers, "attacks": self.attacks, "experts": int(self.gate_sum.shape[2]),
                "utterances": dict(zip(self.attacks, self.utterances.tolist())),
                "mean_gate": self.mean_gate.tolist(), "top1_share": self.top1_share.tolist(),
                "mean_gate_over_layers": self.mean_gate.mean(0).tolist(),
                "attack_information_bits": self.attack_information.tolist()}

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
        information = self.attack_information
        top = int(information.argmax())
        lines.append(f"attack information of the top-1 expert (bits; {math.log2(gate.shape[1]):.0f} = one class per "
                     f"expert): mean {information.mean():.3f} over layers, highest {information[top]:.3f} "
                     f"({self.layers[top]})")
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
