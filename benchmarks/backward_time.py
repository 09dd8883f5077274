"""Backward time per step of baseline, dropin-unfrozen and dropin-frozen, measured side by side in one run.

For each model and each site choice, three copies are built from the same weights: the plain model, the
model grown on the chosen sites with everything training (unfrozen), and the same growth with the original
weights frozen. Steps run round-robin over the three (so machine load hits them alike); only
``loss.backward()`` is timed, and the median over ``--steps`` after ``--warmup`` is printed with the ratios
to the baseline. Table I of the dropin paper reports the same quantity.

    .venv/bin/python benchmarks/backward_time.py      # ResNet18 4 s, wav2vec2-small 1 s (4 s on a GPU)
    .venv/bin/python benchmarks/backward_time.py --models resnet18 --layers layer2.0 --steps 5
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from datetime import date

import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.capacity.dropin import Dropin, GrowthOptions
from plastispoof.models.base import build_model, count_parameters
from plastispoof.runtime import keep_freed_memory

# Seconds of audio per example: 4 s as in Table I; wav2vec2's CNN feature encoder makes 4 s too slow on a
# CPU (its forward, untimed, dominates the run), so it gets 1 s there unless --seconds says otherwise.
SECONDS = {"resnet18": 4.0, "wav2vec2-small": 4.0}
CPU_SECONDS = {"wav2vec2-small": 1.0}


def backward_ms(model: nn.Module, waveform: torch.Tensor, labels: torch.Tensor) -> float:
    """One training step's backward pass in milliseconds (the forward is not timed)."""
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(waveform), labels)
    if waveform.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss.backward()
    if waveform.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def variants(name: str, layers: str, num_layers: int, seed: int,
             device: torch.device) -> tuple[dict[str, nn.Module], list[tuple[str, int]]]:
    """The baseline, unfrozen and frozen models (same weights, same sites) and the grown (site, count)s."""
    torch.manual_seed(seed)
    baseline = build_model(name).to(device)
    unfrozen, frozen = copy.deepcopy(baseline), copy.deepcopy(baseline)
    if layers == "first":  # the earliest sites: the worst case for frozen (backward runs through nearly all)
        options = GrowthOptions(sites=[site.name for site in baseline.growth_sites()[:num_layers]])
    elif layers in ("random", "last", "all"):
        options = GrowthOptions(layers=layers, num_layers=num_layers)
    else:
        options = GrowthOptions(sites=layers.split(","))
    grow = Dropin(options)
    grow.apply(unfrozen, torch.Generator().manual_seed(seed))
    Dropin(grow.options, freeze_original=True, planned=grow.planned).apply(frozen)
    models = {"baseline": baseline, "unfrozen": unfrozen, "frozen": frozen}
    for model in models.values():
        model.train()
    return models, grow.planned


def measure(name: str, layers: str, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    models, planned = variants(name, layers, args.num_layers, args.seed, device)
    seconds = args.seconds or (SECONDS[name] if device.type == "cuda" else CPU_SECONDS.get(name, SECONDS[name]))
    generator = torch.Generator().manual_seed(args.seed)
    waveform = torch.randn(args.batch, int(seconds * 16000), generator=generator).to(device)
    labels = torch.randint(0, 2, (args.batch,), generator=generator).to(device)
    times: dict[str, list[float]] = {key: [] for key in models}
    for step in range(args.warmup + args.steps):
        for key, model in models.items():
            elapsed = backward_ms(model, waveform, labels)
            if step >= args.warmup:
                times[key].append(elapsed)
    median = {key: statistics.median(values) for key, values in times.items()}
    return {"model": name, "layers": layers, "sites": [site for site, _ in planned], "seconds": seconds, **median,
            "params": {key: count_parameters(m) for key, m in models.items()},
            "trainable": count_parameters(models["frozen"], trainable_only=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "wav2vec2-small"], choices=sorted(SECONDS))
    parser.add_argument("--layers", nargs="+", default=["random", "first", "last"],
                        help="site choices to compare, one row each: random, first, last, all, or comma-separated "
                             "site names (e.g. layer1.0)")
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default: per model)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    keep_freed_memory()  # as the plastispoof command does
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    print(f"# {date.today()}  torch {torch.__version__}  {where}  batch {args.batch}, median of {args.steps} "
          f"after {args.warmup} warm-up")
    print("| model | audio | sites | baseline ms | unfrozen ms | frozen ms | unfrozen/base | frozen/base "
          "| params base / grown | trainable frozen |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for layers in args.layers:
            row = measure(name, layers, args, device)
            base = row["baseline"]
            params = row["params"]
            sites = ", ".join(row["sites"])
            label = f"{layers}: {sites}" if layers in ("random", "first", "last", "all") else sites
            print(f"| {name} | {row['seconds']:g} s | {label} | {base:.1f} "
                  f"| {row['unfrozen']:.1f} | {row['frozen']:.1f} | {row['unfrozen'] / base:.2f} "
                  f"| {row['frozen'] / base:.2f} | {params['baseline'] / 1e6:.2f} M / {params['frozen'] / 1e6:.2f} M "
                  f"| {row['trainable'] / 1e6:.2f} M |", flush=True)


if __name__ == "__main__":
    main()
