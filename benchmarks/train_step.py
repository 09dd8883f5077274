"""Forward and backward time of one training step per model (random weights), timed as the trainer times them.

Each model is built with its registry defaults and trained on a batch of ``--batch`` x ``--seconds`` of noise
with the trainer's default optimizer. A step is split as in ``plastispoof.training``: the forward pass with the
loss (plus any method regulariser) is one timing, ``loss.backward()`` the other; the optimiser step runs but
is not timed. Medians over ``--steps`` steps after ``--warmup`` are printed with the parameter counts
(wav2vec2 keeps its CNN feature encoder frozen by default, so fewer of its parameters train) and the
multiply-accumulates of one utterance's forward pass (``torch.utils.flop_counter``: convolutions and matrix
products; element-wise work is not counted), and the forward and backward time per utterance (batch time / batch).
AASIST against the published implementation: ``benchmarks/aasist_speed.py train --reference PATH``.

    python benchmarks/train_step.py                       # resnet18, grnn, wav2vec2-small, aasist-l, aasist; 2 threads
    python benchmarks/train_step.py --with-base           # also wav2vec2 base (slow on a CPU)
    python benchmarks/train_step.py --models grnn --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date

import torch
from features import cpu_name
from torch import nn

from plastispoof.config import TrainConfig
from plastispoof.models.base import build_model, count_parameters
from plastispoof.models.flops import count_flops
from plastispoof.runtime import keep_freed_memory
from plastispoof.training.losses import auxiliary_loss, classification_loss
from plastispoof.training.optim import build_optimizer

MODELS = ["resnet18", "grnn", "wav2vec2-small", "aasist-l", "aasist"]
BASE = "wav2vec2"  # the base size: 94 M parameters, several seconds a step on a CPU


def step_ms(model: nn.Module, optimizer: torch.optim.Optimizer, waveform: torch.Tensor,
            target: torch.Tensor) -> tuple[float, float]:
    """One training step; returns (forward + loss ms, backward ms)."""
    started = time.perf_counter()
    loss = classification_loss("ce", model(waveform), target, None)
    extra = auxiliary_loss(model)
    if extra is not None:
        loss = loss + extra
    forward_done = time.perf_counter()
    loss.backward()
    backward_done = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return 1000 * (forward_done - started), 1000 * (backward_done - forward_done)


def measure(name: str, args: argparse.Namespace) -> tuple[int, int, int, float, float]:
    """Parameters, trainable parameters, forward MACs per utterance and the median forward and backward ms."""
    torch.manual_seed(args.seed)
    model = build_model(name).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(TrainConfig(), trainable)
    generator = torch.Generator().manual_seed(args.seed)
    waveform = 0.1 * torch.randn(args.batch, int(args.seconds * 16000), generator=generator)
    target = torch.randint(0, 2, (args.batch,), generator=generator)
    with torch.no_grad():  # eval mode: batch-norm statistics of a single utterance are not needed
        macs = count_flops(model.eval(), waveform[:1]) // 2
    model.train()
    timings = [step_ms(model, optimizer, waveform, target) for _ in range(args.warmup + args.steps)][args.warmup:]
    forward, backward = zip(*timings)
    return (count_parameters(model), count_parameters(model, trainable_only=True), macs,
            statistics.median(forward), statistics.median(backward))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS + [BASE])
    parser.add_argument("--with-base", action="store_true", help=f"also time {BASE} (base size)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    keep_freed_memory()  # as the plastispoof command does
    torch.set_num_threads(args.threads)
    names = args.models + ([BASE] if args.with_base and BASE not in args.models else [])

    print(f"# {date.today()}  torch {torch.__version__}  {cpu_name()}, {args.threads} threads  batch {args.batch} "
          f"x {args.seconds:g} s, median of {args.steps} after {args.warmup} warm-up")
    print("| model | params | trainable | GMACs / utterance | forward ms | backward ms | forward ms / utt. | "
          "backward ms / utt. |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        params, trainable, macs, forward, backward = measure(name, args)
        print(f"| {name} | {params:,} | {trainable:,} | {macs / 1e9:.2f} | {forward:.0f} | {backward:.0f} | "
              f"{forward / args.batch:.0f} | {backward / args.batch:.0f} |", flush=True)


if __name__ == "__main__":
    main()
