"""Grad-CAM of a finished ResNet-style run: where in the spectrogram each stage looks for the bona fide class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plastispoof.errors import InputError


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
