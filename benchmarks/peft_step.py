"""Training-step cost of full fine-tuning vs LoRA vs MoLEx on wav2vec2-small (random weights).

One step = forward + backward + AdamW step on a batch of ``--batch`` x ``--seconds`` of noise. The three models
are built from the same seed and stepped in turn, round after round, in this one run, so they share the
machine's state; the script prints the median step time, forward/backward split and trainable parameters of
each, and the ratios to full fine-tuning.

    python benchmarks/peft_step.py                      # batch 4 x 2 s, 5 timed rounds
    python benchmarks/peft_step.py --freeze-feature-encoder   # full FT keeps the CNN frozen too
    python benchmarks/peft_step.py --threads 1          # one core (a shared machine)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable

import torch
from torch import nn

from plastispoof.capacity.lora import LoraTransform
from plastispoof.capacity.molex import MoLExTransform
from plastispoof.models.base import build_model, count_parameters
from plastispoof.runtime import keep_freed_memory


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stepper(model: nn.Module, waveform: torch.Tensor, target: torch.Tensor) -> Callable[[], tuple[float, float]]:
    """A closure running one training step; returns (forward s, backward + optimiser s)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step() -> tuple[float, float]:
        synchronize(waveform.device)
        start = time.perf_counter()
        logits = model(waveform)
        loss = nn.functional.cross_entropy(logits, target)
        for module in model.modules():  # MoLEx regularisers, as the trainer adds them
            if callable(getattr(module, "auxiliary_loss", None)):
                loss = loss + module.auxiliary_loss()
        synchronize(waveform.device)
        middle = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(waveform.device)
        return middle - start, time.perf_counter() - middle

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per method (after one warm-up)")
    parser.add_argument("--freeze-feature-encoder", action="store_true",
                        help="full fine-tuning keeps the CNN feature encoder frozen (default: everything trains, "
                             "as Table I's baseline)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    args = parser.parse_args()
    keep_freed_memory()  # as the plastispoof command does
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def fresh() -> nn.Module:
        torch.manual_seed(42)
        return build_model("wav2vec2", size="small", freeze_feature_encoder=args.freeze_feature_encoder)

    models = {
        "full fine-tuning": fresh(),
        "LoRA (q,v; r 8)": LoraTransform().apply(fresh()),
        "MoLEx (q,v; 4 x r 8)": MoLExTransform().apply(fresh()),
    }
    generator = torch.Generator().manual_seed(0)
    waveform = torch.randn(args.batch, int(args.seconds * 16000), generator=generator).to(device)
    target = torch.tensor([i % 2 for i in range(args.batch)], device=device)
    steps = {name: stepper(model.to(device), waveform, target) for name, model in models.items()}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for round_ in range(args.rounds + 1):
        for name, step in steps.items():
            timing = step()
            if round_:  # round 0 is the warm-up
                times[name].append(timing)

    cpu = platform.processor() or platform.machine()
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(f"wav2vec2-small (random weights), batch {args.batch} x {args.seconds:g} s, {args.rounds} rounds, "
          f"torch {torch.__version__}, {device.type} ({hardware}, {torch.get_num_threads()} threads)")
    print(f"{'method':<22} {'step ms':>8} {'fwd ms':>8} {'bwd+opt ms':>10} {'trainable':>11}   ratios to full FT: "
          f"{'step':>5} {'bwd+opt':>7} {'trainable':>9}")
    reference = None
    for name, model in models.items():
        forward = statistics.median(f for f, _ in times[name]) * 1e3
        backward = statistics.median(b for _, b in times[name]) * 1e3
        total = statistics.median(f + b for f, b in times[name]) * 1e3
        trainable = count_parameters(model, trainable_only=True)
        reference = reference or (total, backward, trainable)
        print(f"{name:<22} {total:8.1f} {forward:8.1f} {backward:10.1f} {trainable:11,d}   {'':>19}"
              f"{total / reference[0]:5.2f} {backward / reference[1]:7.2f} {trainable / reference[2]:9.4f}")


if __name__ == "__main__":
    main()
