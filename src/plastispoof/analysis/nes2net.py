"""The Nes2Net comparison (seed 002): back-ends on the same frozen SSL features, with their cost side by side.

``plastispoof reproduce nes2net --root CORPUS`` (recipe ``configs/nes2net.yaml``):

1. the encoder: a wav2vec2-small trained on the corpus (the recipe's ``encoder`` config, seed 42), unless
   ``--encoder-run`` names a finished run or a Hugging Face folder to take the features from;
2. every back-end (``ssl-nes2net``, ``ssl-nes2net-x``, ``ssl-aasist`` = reduction + AASIST, ``ssl-linear``)
   trains on that encoder's frozen features (encoded once into ``<out>/features``), one run per seed, and is
   evaluated on the eval subset;
3. ``nes2net.{md,csv,json}`` under ``out``: per back-end, test EER (mean ± std over seeds), back-end
   parameters, MACs of the back-end on 4 s of audio's features (``torch.utils.flop_counter``), and training
   time per epoch (the median over epochs; the first epoch of the first run also encodes the features).

Finished runs are reused, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from plastispoof.analysis.recipes import REPO, load_recipe, merge_dicts, run_cell, run_name
from plastispoof.analysis.tables import csv_text, markdown_table, mean_std
from plastispoof.config import apply_overrides, load_config, validate
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json, atomic_write_text

RECIPE = REPO / "configs" / "nes2net.yaml"
FLOPS_SECONDS = 4.0  # the Nes2Net paper costs its back-ends on 4 s of audio
ENCODER = "encoder-wav2vec2-small"


@dataclass
class BackendRow:
    backend: str
    seeds: list[int]
    eer: float | None  # mean over seeds, %
    eer_std: float | None
    backend_params: int
    total_params: int
    backend_macs: int  # on the features of 4 s of audio
    epoch_s: float | None  # median over epochs and seeds
    runs: list[str]


CSV_COLUMNS = ["backend", "seeds", "eer_percent", "eer_std", "backend_params", "backend_macs_4s", "epoch_s"]
COLUMNS = ["Back-end", "Seeds", "Test EER (%)", "Back-end params", "Back-end MACs per 4 s",
           "MACs vs reduction + AASIST",
           "Train s / epoch"]


def backend_config(recipe: dict, backend: str, root: Path, out: Path, seed: int, encoder: str,
                   epochs: int | None, overrides: list[str]):
    """The experiment config of one back-end run on the encoder's frozen features."""
    if backend not in recipe["backends"]:
        raise InputError(f"back-end {backend!r} is not in the recipe; known: {', '.join(recipe['backends'])}")
    common = recipe["common"]
    data = merge_dicts({"data": common["data"], "train": common["train"]},
                       {"name": run_name(backend, "frozen-features", seed), "seed": seed, "output_dir": str(out),
                        "data": {"root": str(root), "feature_cache": str(out / "features")},
                        "model": {"name": backend, "args": {"frontend": {**common["frontend"], "pretrained": encoder},
                                                            "backend": recipe["backends"][backend] or {}}},
                        "strategy": {"name": "baseline", "args": {}}})
    if epochs is not None:
        data["train"]["epochs"] = epochs
    return apply_overrides(validate(data, f"nes2net recipe {backend}"), overrides)


def backend_macs(model: torch.nn.Module, sample_rate: int) -> int:
    """MACs of the model's back-end on the features of ``FLOPS_SECONDS`` of audio (eval mode)."""
    from plastispoof.models.flops import count_flops

    model.eval()
    with torch.no_grad():
        features = model.frontend(torch.zeros(1, int(FLOPS_SECONDS * sample_rate)))
    return count_flops(model.backend, features) // 2


def measure(backend: str, cells: list[tuple[int, dict[str, Any], Path]], sample_rate: int) -> BackendRow:
    from plastispoof.runs import load_run_model, read_jsonl

    model, _ = load_run_model(cells[0][2])
    eer, eer_std = mean_std([100 * cell["report"]["eer"] for _, cell, _ in cells])
    epochs = [record["epoch_s"] for _, _, run in cells for record in read_jsonl(run / "metrics.jsonl")
              if record.get("epoch_s") is not None]
    return BackendRow(backend, [seed for seed, _, _ in cells], eer, eer_std,
                      sum(p.numel() for p in model.backend.parameters()), sum(p.numel() for p in model.parameters()),
                      backend_macs(model, sample_rate), statistics.median(epochs) if epochs else None,
                      [str(run) for _, _, run in cells])


def format_markdown(rows: list[BackendRow]) -> str:
    reference = next((row.backend_macs for row in rows if row.backend == "ssl-aasist"), None)

    def cells(row: BackendRow) -> list[str]:
        eer = "-" if row.eer is None else f"{row.eer:.2f} ± {row.eer_std:.2f}"
        ratio = f"{100 * row.backend_macs / reference:.1f} %" if reference else "-"
        epoch = "-" if row.epoch_s is None else f"{row.epoch_s:.1f}"
        return [row.backend, ",".join(map(str, row.seeds)), eer, f"{row.backend_params:,}",
                f"{row.backend_macs / 1e6:.1f} M", ratio, epoch]

    return markdown_table(COLUMNS, [cells(row) for row in rows])


def reproduce_nes2net(root: str | Path, out: str | Path = "runs/nes2net", seeds: tuple[int, ...] = (42, 43, 44),
                      epochs: int | None = None, encoder_run: str | Path | None = None,
                      backends: list[str] | None = None, overrides: list[str] | None = None,
                      encoder_overrides: list[str] | None = None) -> str:
    """Run the comparison (see the module notes) and return its Markdown table."""
    recipe = load_recipe(RECIPE)
    root, out = Path(root), Path(out)
    backends = backends or list(recipe["backends"])
    for backend in backends:
        if backend not in recipe["backends"]:
            raise InputError(f"back-end {backend!r} is not in the recipe; known: {', '.join(recipe['backends'])}")
    if not root.is_dir():
        raise InputError(f"corpus root not found: {root} (write one with plastispoof synth --profile demo)")
    encoder_row = None
    if encoder_run is None:
        encoder_cfg = load_config(REPO / recipe["encoder"], [f"data.root={root}", f"output_dir={out}",
                                                             f"name={ENCODER}", *(encoder_overrides or [])])
        encoder_cell = run_cell(encoder_cfg, "eval")
        encoder_run = encoder_cfg.run_dir
        encoder_row = {"run": str(encoder_run), "eer": 100 * encoder_cell["report"]["eer"],
                       "params": encoder_cell["meta"]["params"]}
    encoder = str(Path(encoder_run).resolve())
    rows = []
    for backend in backends:
        cells = []
        for seed in seeds:
            cfg = backend_config(recipe, backend, root, out, seed, encoder, epochs, list(overrides or []))
            cells.append((seed, run_cell(cfg, "eval"), cfg.run_dir))
        rows.append(measure(backend, cells, cfg.data.sample_rate))
    table = format_markdown(rows)
    summary = {"encoder": encoder_row or {"run": encoder}, "seeds": list(seeds), "epochs": epochs,
               "flops_seconds": FLOPS_SECONDS, "rows": [asdict(row) for row in rows]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "nes2net.md", table + "\n")
    atomic_write_text(out / "nes2net.csv", csv_text(CSV_COLUMNS, [[row.backend, " ".join(map(str, row.seeds)), row.eer,
                                                                row.eer_std, row.backend_params, row.backend_macs,
                                                                row.epoch_s] for row in rows]))
    atomic_write_json(out / "nes2net.json", summary)
    if encoder_row:
        table += (f"\n\nEncoder: wav2vec2-small trained end to end on the corpus ({encoder_row['run']}): test EER "
                  f"{encoder_row['eer']:.2f} %, {encoder_row['params']:,} parameters.")
    return table
