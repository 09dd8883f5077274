"""`plastispoof reproduce unseen`: leave-one-family-out training, seen vs held-out EER, pretrained starting points."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from needs import unless
from tiny_run import write_tiny_corpus

from plastispoof.analysis.unseen import read_families, reproduce_unseen, split_eers
from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.score_files import read_scores

OFFICIAL = Path(__file__).resolve().parents[2] / "shared/data/aasist/AASIST-L.pth"
FAMILIES = {"pair": ["A01", "A02"], "third": ["A03"]}
PROTOCOLS = "ASVspoof2019_LA_cm_protocols"


def write_lofo_corpus(root: Path, families: dict[str, list[str]] = FAMILIES) -> Path:
    """A tiny ASVspoof-2019-LA corpus whose spoofs cycle through A01-A03, with a corpus.json and one
    leave-one-family-out root per family (train/dev without the family, eval with everything)."""
    write_tiny_corpus(root, counts={"train": (9, 9), "dev": (6, 6), "eval": (6, 9)}, seconds=0.3)
    base = root / "LA"
    for name in base.joinpath(PROTOCOLS).iterdir():  # spoof i -> A01, A02, A03 in turn
        lines = [line.split() for line in name.read_text().splitlines()]
        n = 0
        for tokens in lines:
            if tokens[4] == "spoof":
                tokens[3], n = f"A0{1 + n % 3}", n + 1
        name.write_text("".join(" ".join(t) + "\n" for t in lines))
    for family, attacks in families.items():
        lofo = root / "lofo" / family
        (lofo / PROTOCOLS).mkdir(parents=True)
        for name in base.joinpath(PROTOCOLS).iterdir():
            keep = [line for line in name.read_text().splitlines()
                    if ".eval." in name.name or line.split()[3] not in attacks]
            (lofo / PROTOCOLS / name.name).write_text("\n".join(keep) + "\n")
        for subset in ("train", "dev", "eval"):
            os.symlink(base / f"ASVspoof2019_LA_{subset}", lofo / f"ASVspoof2019_LA_{subset}")
    manifest = {"families": {f: {"attacks": a, "kind": "copy-synthesis"} for f, a in families.items()},
                "lofo": {f: f"lofo/{f}" for f in families}}
    (root / "corpus.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_lofo_corpus(tmp_path_factory.mktemp("lofo"))


def write_recipe(path: Path, with_pretrained: bool) -> Path:
    systems = {"tiny": {"model": {"name": "tiny-test", "args": {"hidden": 8}}, "train": {"lr": 0.02}}}
    if with_pretrained:
        aasist = {"model": {"name": "aasist-l"}, "pretrained": True, "data": {"num_samples": 4800}}
        systems["aasist-l-zero-shot"] = {**aasist, "zero_shot": True}
        systems["aasist-l-finetune"] = {**aasist, "strategy": {"name": "finetune", "args": {"freeze": ["encoder"]}},
                                        "train": {"max_steps_per_epoch": 1, "lr": 1e-4}}
    recipe = {"defaults": {"data": {"num_samples": 1600, "batch_size": 6, "eval_batch_size": 16},
                           "train": {"epochs": 1}},
              "systems": systems}
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_leave_one_family_out_roots_hide_the_family_from_training(corpus):
    families, roots = read_families(corpus)
    assert families == FAMILIES
    for family, attacks in families.items():
        train = read_dataset("asv19-la", roots[family], "train")
        evaluation = read_dataset("asv19-la", roots[family], "eval")
        assert not {t.attack for t in train} & set(attacks)
        assert set(attacks) <= {t.attack for t in evaluation}


def test_table_has_seen_and_held_out_eers_per_family_and_seed_and_reruns_skip(corpus, tmp_path):
    recipe = write_recipe(tmp_path / "recipe.yaml", with_pretrained=False)
    out = tmp_path / "out"
    text = reproduce_unseen(corpus, seeds=[1, 2], out=out, recipe_path=recipe)
    report = json.loads((out / "unseen.json").read_text())
    cells = report["cells"]
    assert sorted((c["held_out"], c["seed"]) for c in cells) == [("pair", 1), ("pair", 2), ("third", 1), ("third", 2)]
    for cell in cells:  # each number is the split of that run's own eval scores
        run = Path(cell["run"])
        expected = split_eers(read_dataset("asv19-la", corpus / "lofo" / cell["held_out"], "eval"),
                              read_scores(run / "scores" / "asv19-la-eval.txt"), FAMILIES[cell["held_out"]])
        assert (cell["seen_eer"], cell["held_out_eer"]) == (expected["seen_eer"], expected["held_out_eer"])
        assert json.loads((run / "meta.json").read_text())["finished"]
    assert "| tiny | **mean** |" in text and (out / "unseen.png").stat().st_size > 1000
    assert "Held-out EER % per speaker:\n\n| system | held-out family | LA_0000 | LA_0001 | LA_0002 |" in text
    assert (out / "unseen.csv").read_text().count("\n") == 4  # header, two families, mean
    weights = [Path(c["run"]) / "model.safetensors" for c in cells]
    stamps = [w.stat().st_mtime_ns for w in weights]
    assert reproduce_unseen(corpus, seeds=[1, 2], out=out, recipe_path=recipe) == text
    assert [w.stat().st_mtime_ns for w in weights] == stamps  # finished runs are not trained again


@unless(OFFICIAL.is_file(), f"official checkpoint not at {OFFICIAL}")
def test_pretrained_systems_start_from_the_imported_checkpoint_and_get_a_verdict(corpus, tmp_path):
    from plastispoof import runs
    from plastispoof.inference import Detector

    recipe = write_recipe(tmp_path / "recipe.yaml", with_pretrained=True)
    out = tmp_path / "out"
    text = reproduce_unseen(corpus, systems=["aasist-l-zero-shot", "aasist-l-finetune"], families=["third"],
                            weights=OFFICIAL, out=out, recipe_path=recipe)
    imported = out / "imported" / "aasist-l-n4800"
    cells = json.loads((out / "unseen.json").read_text())["cells"]
    zero = next(c for c in cells if c["system"] == "aasist-l-zero-shot")
    assert Path(zero["run"]) == imported and zero["seed"] is None and zero["trainable_params"] == 0
    # zero-shot scores are the official weights' own, on the same crops
    trials = read_dataset("asv19-la", corpus / "lofo" / "third", "eval")
    detector = Detector.from_weights("aasist-l", OFFICIAL)
    from plastispoof.scoring import score_trials

    scores = score_trials(detector.model, trials, 4800, 16, "cpu", show_progress=False)
    assert zero["held_out_eer"] == split_eers(trials, scores, ["A03"])["held_out_eer"]
    tuned = next(c for c in cells if c["system"] == "aasist-l-finetune")
    meta = runs.read_meta(tuned["run"])
    assert meta["stages"][0]["name"] == "finetune" and 0 < meta["trainable_params"] < meta["params"]
    assert runs.read_run_config(tuned["run"]).strategy.args["baseline_run"] == str(imported)
    assert "aasist-l-finetune, third held out: seen" in text and ("meets the goal" in text or "misses the goal" in text)


def test_bad_requests_are_one_line_input_errors(corpus, tmp_path):
    recipe = write_recipe(tmp_path / "recipe.yaml", with_pretrained=True)
    with pytest.raises(InputError, match="has no corpus.json"):
        reproduce_unseen(tmp_path, recipe_path=recipe)
    single = tmp_path / "single"
    single.mkdir()
    (single / "corpus.json").write_text(json.dumps({"families": {"only": {"attacks": ["A01"]}},
                                                    "lofo": {"only": "lofo/only"}}))
    with pytest.raises(InputError, match="needs at least 2 attack families"):
        reproduce_unseen(single, recipe_path=recipe)
    with pytest.raises(InputError, match="pass --weights"):
        reproduce_unseen(corpus, systems=["aasist-l-zero-shot"], out=tmp_path / "o", recipe_path=recipe)
    with pytest.raises(InputError, match="unknown system 'nope'; known: aasist-l-finetune, aasist-l-zero-shot, tiny"):
        reproduce_unseen(corpus, systems=["nope"], out=tmp_path / "o", recipe_path=recipe)
    with pytest.raises(InputError, match="unknown attack family 'x'; the corpus has: pair, third"):
        reproduce_unseen(corpus, systems=["tiny"], families=["x"], out=tmp_path / "o", recipe_path=recipe)


def test_the_shipped_recipe_builds_a_valid_config_for_every_system(corpus, tmp_path):
    from plastispoof.analysis.unseen import RECIPE, load_recipe, system_config
    from plastispoof.capacity.base import build_strategy

    recipe = load_recipe(RECIPE)
    assert set(recipe["default_systems"]) <= set(recipe["systems"])
    for system in recipe["systems"]:
        spec = recipe["systems"][system]
        base = tmp_path / "base" if spec.get("pretrained") and not spec.get("zero_shot") else None
        cfg = system_config(recipe, system, "third", corpus / "lofo" / "third", 42, tmp_path, base, None, [])
        build_strategy(cfg.strategy.name, cfg.strategy.args).stages(cfg.train.epochs)


def test_later_invocations_add_to_the_table_and_folders_merge(corpus, tmp_path):
    from typer.testing import CliRunner

    from plastispoof.cli import app

    recipe = write_recipe(tmp_path / "recipe.yaml", with_pretrained=False)
    first, second = tmp_path / "a", tmp_path / "b"
    reproduce_unseen(corpus, families=["pair"], seeds=[1], out=first, recipe_path=recipe)
    text = reproduce_unseen(corpus, families=["third"], seeds=[1], out=first, recipe_path=recipe)
    assert "| tiny | pair |" in text and "| tiny | third |" in text  # the first invocation's row stays
    reproduce_unseen(corpus, families=["third"], seeds=[2], out=second, recipe_path=recipe)
    result = CliRunner().invoke(app, ["reproduce", "unseen", "--merge", f"{first},{second}",
                                      "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    cells = json.loads((tmp_path / "merged" / "unseen.json").read_text())["cells"]
    assert sorted((c["held_out"], c["seed"]) for c in cells) == [("pair", 1), ("third", 1), ("third", 2)]
    assert "| tiny | third |" in result.output and "1,2" in result.output


def test_two_invocations_into_one_folder_keep_each_others_cells(corpus, tmp_path, monkeypatch):
    # One invocation per core, both writing runs/unseen: the one that started first writes last, and must not
    # drop the cell the other wrote meanwhile (it used to: it merged into what the folder held when it started).
    from plastispoof.analysis import recipes

    recipe = write_recipe(tmp_path / "recipe.yaml", with_pretrained=False)
    out, inner = tmp_path / "shared", recipes.run_cell
    other_finished: list[str] = []

    def run_cell_while_the_other_invocation_finishes(cfg, *args, **kwargs):
        if "pair" in str(cfg.run_dir) and not other_finished:  # the first invocation's only cell, once
            other_finished.append(reproduce_unseen(corpus, families=["third"], seeds=[1], out=out, recipe_path=recipe))
        return inner(cfg, *args, **kwargs)

    monkeypatch.setattr(recipes, "run_cell", run_cell_while_the_other_invocation_finishes)
    text = reproduce_unseen(corpus, families=["pair"], seeds=[1], out=out, recipe_path=recipe)
    assert "| tiny | third |" in other_finished[0] and "| tiny | pair |" not in other_finished[0]
    assert "| tiny | pair |" in text and "| tiny | third |" in text
    cells = json.loads((out / "unseen.json").read_text())["cells"]
    assert sorted(c["held_out"] for c in cells) == ["pair", "third"]


def test_verdicts_compare_each_family_with_the_zero_shot_row_of_the_same_family():
    from plastispoof.analysis.unseen import Row, verdicts

    rows = [Row("zero", "a", (0.30, 0.0), (0.10, 0.0)), Row("zero", "b", (0.40, 0.0), (0.20, 0.0)),
            Row("zero", "mean", (0.35, 0.05), (0.15, 0.05)),
            Row("tuned", "a", (0.20, 0.0), (0.105, 0.0)), Row("frozen", "b", (0.45, 0.0), (0.15, 0.0))]
    lines = verdicts(rows, "zero", ["tuned", "frozen"])
    assert lines == [
        "- tuned, a held out: seen 20.0 % vs 30.0 % zero-shot (adapts); held-out +0.5 points (within the 1-point "
        "budget) -> meets the goal",
        "- frozen, b held out: seen 45.0 % vs 40.0 % zero-shot (does not adapt); held-out -5.0 points (within the "
        "1-point budget) -> misses the goal"]

