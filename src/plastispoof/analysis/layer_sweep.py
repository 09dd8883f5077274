"""The layer sweep (the paper's Fig. 5): drop in at each layer of one model in turn, EER per layer against the
baseline's, as a table and a PNG."""

from __future__ import annotations

from pathlib import Path

from plastispoof.analysis.recipes import RECIPE, load_recipe, run_cell, run_config
from plastispoof.analysis.table1 import aggregate_rows, write_table
from plastispoof.scale.sharding import is_main_rank


def layer_key(site_name: str) -> str:
    """The layer a growth site belongs to: sites of one encoder layer (attention, FFN) share it.

    >>> layer_key("encoder.3.attention"), layer_key("layer2.1"), layer_key("gru0")
    ('encoder.3', 'layer2.1', 'gru0')
    """
    head, _, last = site_name.rpartition(".")
    return head if head and not last.isdigit() else site_name


def layer_ablation(dataset: str, root: Path, model: str = "wav2vec2-small", strategy: str = "dropin-frozen",
                   seeds: list[int] | None = None, out: Path = Path("runs/layers"), epochs: int | None = None,
                   overrides: list[str] | None = None, recipe_path: Path = RECIPE) -> str:
    """Fig. 5: drop in at each layer in turn (all of that layer's growth sites) and write EER per layer as a
    table (md/csv/json) and a PNG, with the baseline's EER as a reference line. Returns the Markdown."""
    from plastispoof.models.base import build_model
    from plastispoof.plots import plot_layer_ablation

    recipe = load_recipe(recipe_path)
    seeds = seeds or [recipe["common"].get("seed", 42)]
    out = Path(out) / dataset
    probe = run_config(recipe, dataset, Path(root), model, "baseline", seeds[0], out, epochs, overrides)
    layers: dict[str, list[str]] = {}
    for site in build_model(probe.model.name, **probe.model.args).growth_sites():
        layers.setdefault(layer_key(site.name), []).append(site.name)
    baseline = [run_cell(run_config(recipe, dataset, Path(root), model, "baseline", seed, out, epochs, overrides),
                         probe.data.eval_subset) for seed in seeds]
    rows = [aggregate_rows(dataset, model, "baseline", baseline)]
    for key, sites in layers.items():
        per_seed = [run_cell(run_config(recipe, dataset, Path(root), model, strategy, seed, out, epochs, overrides,
                                        strategy_extra={"sites": sites}, tag=f"-{key}"), probe.data.eval_subset)
                    for seed in seeds]
        rows.append(aggregate_rows(dataset, model, strategy, per_seed))
        rows[-1].strategy = f"{strategy} @ {key}"
    if is_main_rank():  # under torchrun rank 0 alone writes (every rank holds the same rows)
        plot_layer_ablation([(row.strategy.split(" @ ")[-1], row.eer, row.eer_std) for row in rows[1:]],
                            rows[0].eer, out / "layers.png", title=f"{model} on {dataset}: {strategy} per layer")
    return write_table(rows, out, "layers")
