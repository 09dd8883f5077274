"""Table I end to end on the tiny embedded corpus with tiny models: every strategy runs, the table is written,
finished runs are skipped on a re-run, and the numbers in the table are the runs' own."""

from __future__ import annotations

import json

import pytest
import yaml

from plastispoof.analysis.recipes import RECIPE, load_recipe, run_config
from plastispoof.analysis.table1 import Table1Row, aggregate_rows, format_markdown, table1
from plastispoof.errors import InputError

TINY_RECIPE = {
    "common": {"seed": 42, "data": {"num_samples": 16000, "batch_size": 8, "eval_batch_size": 16},
               "train": {"optimizer": "adam", "scheduler": "cosine", "lr": 3e-3, "max_steps_per_epoch": 3}},
    "datasets": {"synthetic": {"data": {"dataset": "synthetic"}, "train": {"epochs": 1}}},
    "models": {"resnet18": {"model": {"name": "resnet18", "args": {"width": 4}}},
               "grnn": {"model": {"name": "grnn", "args": {"hidden_sizes": [8, 8]}}, "train": {"loss": "hinge"}}},
    "strategies": {"baseline": {}, "dropin-unfrozen": {"baseline_run": "auto"},
                   "dropin-frozen": {"baseline_run": "auto"}, "plasticity": {"baseline_run": "auto"}},
}


def test_shipped_recipe_resolves_every_cell(tmp_path):
    recipe = load_recipe(RECIPE)
    for dataset in recipe["datasets"]:
        for model in recipe["models"]:
            for strategy in recipe["strategies"]:
                cfg = run_config(recipe, dataset, tmp_path, model, strategy, 43, tmp_path / "out")
                assert cfg.seed == 43 and cfg.strategy.name == strategy
                if strategy != "baseline" and cfg.strategy.args.get("baseline_run"):
                    assert cfg.strategy.args["baseline_run"].endswith(f"{model}-baseline-s43")
    small_lora = run_config(recipe, "synthetic", tmp_path, "wav2vec2", "lora", 42, tmp_path)
    assert small_lora.strategy.args["baseline_run"] is None  # the pretrained base is LoRA-tuned directly


def test_markdown_marks_not_applicable_cells():
    row = Table1Row("synthetic", "grnn", "plasticity", 2, 10.0, 1.5, None, None, 0.06, 0.0, None, None, [])
    line = format_markdown([row]).splitlines()[-1]
    assert "10.00 ± 1.50" in line and line.count("/") == 2


def _seed_run(seed: int, eer: float, params: int, trainable: int, backward_ms: float) -> dict:
    stage = {"name": "dropin", "params": params, "trainable_params": trainable, "backward_ms": backward_ms}
    transforms = [{"kind": "dropin", "sites": [[str(seed), 1]]}]
    return {"report": {"eer": eer}, "meta": {"seed": seed, "transforms": transforms,
                                             "stages": [stage]}}


def test_sizes_are_averaged_over_seeds_whose_growth_sites_differ():
    # dropin on random sites: seed 1 grows a bigger layer than seed 2, so params and trainable params differ
    row = aggregate_rows("synthetic", "resnet18", "dropin-frozen",
                         [_seed_run(1, 0.30, 14_000_000, 4_000_000, 30.0),
                          _seed_run(2, 0.20, 12_000_000, 2_000_000, 10.0)])
    assert row.eer == pytest.approx(25.0) and row.params_m == pytest.approx(13.0)
    assert row.trainable_m == pytest.approx(3.0)
    assert row.params_m_std == pytest.approx(2 ** 0.5) and row.backward_ms == pytest.approx(20.0)
    assert [run["seed"] for run in row.runs] == [1, 2] and row.runs[1]["transforms"][0]["sites"] == [["2", 1]]
    assert "13.00 ± 1.41" in format_markdown([row])


@pytest.mark.slow
def test_table1_on_tiny_corpus(tmp_path, tiny_corpus):
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(TINY_RECIPE))
    out = tmp_path / "table"
    markdown = table1("synthetic", tiny_corpus, models=["resnet18", "grnn"],
                      strategies=["baseline", "dropin-frozen", "plasticity"], seeds=[42], out=out,
                      recipe_path=recipe_path)
    rows = json.loads((out / "synthetic" / "table1.json").read_text())
    assert len(rows) == 6 and (out / "synthetic" / "table1.csv").exists()
    by_key = {(r["model"], r["strategy"]): r for r in rows}
    for model in ("resnet18", "grnn"):
        base, frozen, plastic = (by_key[(model, s)] for s in ("baseline", "dropin-frozen", "plasticity"))
        assert frozen["params_m"] > base["params_m"] > 0
        assert frozen["trainable_m"] < frozen["params_m"]
        assert plastic["params_m"] == base["params_m"]  # plasticity ends with the original size
        assert plastic["backward_ms"] is None and base["backward_ms"] > 0
        run = out / "synthetic" / f"{model}-baseline-s42"
        report = json.loads((run / "scores" / "synthetic-eval.json").read_text())
        assert base["eer"] == pytest.approx(100 * report["eer"])
    assert "dropin-frozen" in markdown
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    table1("synthetic", tiny_corpus, models=["resnet18", "grnn"],
           strategies=["baseline", "dropin-frozen", "plasticity"], seeds=[42], out=out, recipe_path=recipe_path)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")} == stamp  # finished runs skipped
    with pytest.raises(InputError, match=r"train\.epochs: 1 -> 2"):  # a finished run of another recipe
        table1("synthetic", tiny_corpus, models=["resnet18"], strategies=["baseline"], seeds=[42], out=out,
               epochs=2, recipe_path=recipe_path)


@pytest.mark.slow
def test_layer_ablation_and_gradcam_on_tiny_corpus(tmp_path, tiny_corpus):
    from plastispoof.analysis.gradcam import gradcam_figure
    from plastispoof.analysis.layer_sweep import layer_ablation

    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(TINY_RECIPE))
    out = tmp_path / "layers"
    markdown = layer_ablation("synthetic", tiny_corpus, model="grnn", seeds=[42], out=out, recipe_path=recipe_path)
    rows = json.loads((out / "synthetic" / "layers.json").read_text())
    assert [r["strategy"] for r in rows] == ["baseline", "dropin-frozen @ gru0", "dropin-frozen @ gru1"]
    grown = {r["strategy"]: r["params_m"] for r in rows}
    assert grown["dropin-frozen @ gru0"] > grown["baseline"] and (out / "synthetic" / "layers.png").exists()
    assert "gru1" in markdown

    run = table1("synthetic", tiny_corpus, models=["resnet18"], strategies=["baseline"], seeds=[42],
                 out=tmp_path / "t", recipe_path=recipe_path) and tmp_path / "t" / "synthetic" / "resnet18-baseline-s42"
    audio = next((tiny_corpus / "LA" / "ASVspoof2019_LA_eval" / "flac").glob("*.flac"))
    png = gradcam_figure(run, audio)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.parent == run / "plots"


def test_gradcam_maps_are_normalised_per_stage():
    import torch

    from plastispoof.analysis.gradcam import gradcam_maps
    from plastispoof.models.base import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", width=4)
    spectrogram, maps = gradcam_maps(model, torch.randn(16000))
    assert len(maps) == 4
    for cam in maps:
        assert cam.shape == spectrogram.shape and float(cam.min()) >= 0 and float(cam.max()) <= 1 + 1e-6
