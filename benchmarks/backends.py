"""Forward and backward time of the SSL back-ends (Nes2Net, Nes2Net-X, linear, reduction + AASIST), side by side.

Every back-end gets the same random SSL features, ``(batch, dim, frames)`` = (8, 1024, 200) by default (4 s of
a 20 ms XLS-R front-end), in training mode. Rounds run round-robin over the back-ends (so machine load hits
them alike); in each round the forward pass and ``loss.backward()`` are timed separately. The table gives the
median over ``--repeats`` rounds after ``--warmup`` and the ratios to the reduction + AASIST back-end, next to
the MACs that ``plastispoof cost`` counts for one utterance of the same length.

    .venv/bin/python benchmarks/backends.py
    .venv/bin/python benchmarks/backends.py --threads 1 --repeats 5 --backends nes2net,reduction-aasist
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date

import torch
import torch.nn.functional as F

from plastispoof.cost import REFERENCE_BACKEND, backend_cost
from plastispoof.models.nes2net import build_backend
from plastispoof.registry import BACKENDS
from plastispoof.runtime import keep_freed_memory


def step_ms(backend: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(forward ms, backward ms) of one training step."""

    def now() -> float:
        if features.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    backend.zero_grad(set_to_none=True)
    start = now()
    loss = F.cross_entropy(backend(features), labels)
    middle = now()
    loss.backward()
    return (middle - start) * 1000, (now() - middle) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma list (default: all)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    keep_freed_memory()  # as the plastispoof command does
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = [name.strip() for name in args.backends.split(",") if name.strip()]

    torch.manual_seed(args.seed)
    backends = {name: build_backend(name, input_dim=args.dim).to(device).train() for name in names}
    generator = torch.Generator().manual_seed(args.seed)
    features = torch.randn(args.batch, args.dim, args.frames, generator=generator).to(device)
    labels = torch.randint(0, 2, (args.batch,), generator=generator).to(device)
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    for round_index in range(args.warmup + args.repeats):
        for name, backend in backends.items():
            forward, backward = step_ms(backend, features, labels)
            if round_index >= args.warmup:
                times[name][0].append(forward)
                times[name][1].append(backward)

    median = {name: (statistics.median(fwd), statistics.median(bwd)) for name, (fwd, bwd) in times.items()}
    reference = median.get(REFERENCE_BACKEND)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    print(f"# {date.today()}  torch {torch.__version__}  {where}  input ({args.batch}, {args.dim}, {args.frames}), "
          f"median of {args.repeats} after {args.warmup} warm-up")
    print(f"| back-end | params | MACs / utterance | forward ms | backward ms | forward / {REFERENCE_BACKEND} "
          f"| backward / {REFERENCE_BACKEND} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        cost = backend_cost(name, input_dim=args.dim, frames=args.frames)
        forward, backward = median[name]
        ratios = (f"{forward / reference[0]:.2f} | {backward / reference[1]:.2f}" if reference else "- | -")
        print(f"| {name} | {cost['params']:,} | {cost['macs'] / 1e6:.3g} M | {forward:.1f} | {backward:.1f} "
              f"| {ratios} |", flush=True)


if __name__ == "__main__":
    main()
