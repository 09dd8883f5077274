"""Tables and figures built from finished runs: Table I (Markdown/CSV/JSON) and Grad-CAM per ResNet stage."""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_text


@dataclass
class Table1Row:
    """One line of Table I. Numbers are means over seeds; ``*_std`` are the standard deviations (0 for one seed).
    ``None`` means not applicable (the paper's "/"): a method that does not apply to the model, or a quantity
    that varies across the method's stages (plasticity's backward time and trainable parameters)."""

    dataset: str
    model: str
    strategy: str
    seeds: int
    eer: float | None
    eer_std: float | None
    backward_ms: float | None
    backward_ms_std: float | None
    params_m: float | None
    params_m_std: float | None
    trainable_m: float | None
    trainable_m_std: float | None
    runs: list[dict[str, Any]]  # per seed: its seed, growth transforms (sites differ by seed) and stage summaries


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate_rows(dataset: str, model: str, strategy: str, per_seed: list[dict[str, Any]]) -> Table1Row:
    """Average the runs of one model x strategy over seeds. Each item: ``{"report": metrics, "meta": meta}``."""
    from plastispoof.registry import STRATEGIES

    if not per_seed:
        return Table1Row(dataset, model, strategy, 0, *[None] * 8, [])
    reported = STRATEGIES.get_or_fail(strategy).reported_stage
    summaries = [run["meta"]["stages"] for run in per_seed]
    eer, eer_std = _mean_std([100.0 * run["report"]["eer"] for run in per_seed])
    # Randomly chosen growth sites differ between seeds, so sizes are averaged like the EER.
    params, params_std = _mean_std([stages[-1]["params"] / 1e6 for stages in summaries])
    if reported is None:  # varies across stages: per-stage figures go to the JSON only
        backward, backward_std, trainable, trainable_std = None, None, None, None
    else:
        backward, backward_std = _mean_std([stages[reported]["backward_ms"] for stages in summaries])
        trainable, trainable_std = _mean_std([stages[reported]["trainable_params"] / 1e6 for stages in summaries])
    runs = [{"seed": run["meta"].get("seed"), "transforms": run["meta"].get("transforms", []),
             "stages": run["meta"]["stages"]} for run in per_seed]
    return Table1Row(dataset, model, strategy, len(per_seed), eer, eer_std, backward, backward_std,
                     params, params_std, trainable, trainable_std, runs)


def _cell(value: float | None, std: float | None = None, digits: int = 2) -> str:
    if value is None:
        return "/"
    return f"{value:.{digits}f} ± {std:.{digits}f}" if std else f"{value:.{digits}f}"


COLUMNS = ["Dataset", "Model", "Training strategy", "Test EER (%)", "Backward time per step (ms)",
           "Parameters (M)", "Trainable params (M)"]


def table_cells(row: Table1Row) -> list[str]:
    return [row.dataset, row.model, row.strategy, _cell(row.eer, row.eer_std), _cell(row.backward_ms, row.backward_ms_std),
            _cell(row.params_m, row.params_m_std), _cell(row.trainable_m, row.trainable_m_std)]


def format_markdown(rows: list[Table1Row]) -> str:
    """Table I as a Markdown table.

    >>> row = Table1Row("synthetic", "grnn", "baseline", 1, 12.5, 0.0, 3.2, 0.0, 0.06, 0.0, 0.06, 0.0, [])
    >>> print(format_markdown([row]).splitlines()[2])
    | synthetic | grnn | baseline | 12.50 | 3.20 | 0.06 | 0.06 |
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def write_table(rows: list[Table1Row], out: Path, stem: str) -> str:
    """Write ``<stem>.md``, ``.csv`` and ``.json`` under ``out`` (atomically); return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    markdown = format_markdown(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows(table_cells(row) for row in rows)
    atomic_write_text(out / f"{stem}.md", markdown + "\n")
    atomic_write_text(out / f"{stem}.csv", buffer.getvalue())
    atomic_write_text(out / f"{stem}.json", json.dumps([asdict(r) for r in rows], indent=1))
    return markdown


def gradcam_maps(model, waveform) -> tuple[Any, list[Any]]:
    """Grad-CAM of the bona fide logit at the output of each ResNet stage (``model.stages()``).

    Returns the model's input spectrogram (F, T) and one map per stage, each upsampled to (F, T) and scaled to
    [0, 1]. Works on grown models too: the hooks sit on the stages, whatever their blocks hold.
    """
    import torch
    import torch.nn.functional as F

    if not hasattr(model, "stages") or not hasattr(model, "frontend"):
        raise InputError(f"Grad-CAM needs a ResNet-style model with stages; got {type(model).__name__}")
    stages = model.stages()
    activations: list[torch.Tensor] = []
    handles = [stage.register_forward_hook(lambda _m, _i, out: activations.append(out)) for stage in stages]
    model.eval()
    try:
        x = waveform.unsqueeze(0)
        spectrogram = model.frontend(x)[0].detach()
        logits = model(x)
        grads = torch.autograd.grad(logits[0, 1], activations)
    finally:
        for handle in handles:
            handle.remove()
    maps = []
    for activation, grad in zip(activations, grads):
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activation).sum(dim=1, keepdim=True)).detach()
        cam = F.interpolate(cam, size=spectrogram.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        maps.append((cam / cam.max()).nan_to_num(0.0) if cam.max() > 0 else cam)
    return spectrogram, maps


def gradcam_figure(run: Path, audio: Path, out: Path | None = None) -> Path:
    """Write a PNG with the input spectrogram and the Grad-CAM map of each ResNet stage for one audio file."""
    import torch
    from matplotlib.figure import Figure

    from plastispoof.audio import fix_length, load_audio
    from plastispoof.plots import save_figure
    from plastispoof.runs import load_run_model, read_run_config

    model, _ = load_run_model(Path(run))
    num_samples = read_run_config(Path(run)).data.num_samples
    wave = torch.from_numpy(fix_length(load_audio(audio), num_samples)).float()
    spectrogram, maps = gradcam_maps(model, wave)
    figure = Figure(figsize=(3.2 * (len(maps) + 1), 3), constrained_layout=True)
    axes = figure.subplots(1, len(maps) + 1)
    axes[0].imshow(spectrogram.numpy(), origin="lower", aspect="auto", cmap="magma")
    axes[0].set_title("input")
    for index, (ax, cam) in enumerate(zip(axes[1:], maps), start=1):
        ax.imshow(spectrogram.numpy(), origin="lower", aspect="auto", cmap="gray")
        ax.imshow(cam.numpy(), origin="lower", aspect="auto", cmap="jet", alpha=0.5)
        ax.set_title(f"L{index}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(f"Grad-CAM (bona fide logit): {Path(run).name} / {Path(audio).name}")
    return save_figure(figure, Path(out) if out else Path(run) / "plots" / f"gradcam-{Path(audio).stem}.png")
