"""The trainer on a real (tiny) training: run directory contract, rebuilding, seeding, stages, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_run import TinySpectrumModel, tiny_config, without_timing, write_tiny_corpus

from plastispoof.config import load_config
from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.metrics import compute_eer
from plastispoof.runs import load_run_model, read_jsonl
from plastispoof.scoring import score_trials
from plastispoof.training import train

REPO = Path(__file__).resolve().parents[1]
@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory, corpus):
    """A finished two-stage run (train, widen + train) and the model object it trained."""
    cfg = tiny_config(tmp_path_factory.mktemp("runs"), corpus, strategy={"name": "tiny-two-stage", "args": {}})
    run_dir = train(cfg)
    return run_dir, cfg, TinySpectrumModel.instances[-1]


def test_run_directory_holds_every_contract_file(two_stage_run):
    run_dir, cfg, _ = two_stage_run
    for name in ["config.yaml", "model.safetensors", "meta.json", "metrics.jsonl", "plots/training.png",
                 "checkpoints/last.safetensors", "checkpoints/last.json",
                 "stages/0-first/model.safetensors", "stages/0-first/summary.json",
                 "stages/1-widen/model.safetensors", "stages/1-widen/summary.json"]:
        assert (run_dir / name).is_file(), name
    assert load_config(run_dir / "config.yaml") == cfg
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["finished"] and meta["seed"] == cfg.seed
    assert meta["model"] == {"name": "tiny-test", "args": {"hidden": 8}}
    assert meta["strategy"]["name"] == "tiny-two-stage"
    assert meta["transforms"] == [{"kind": "tiny-widen", "extra": 4, "freeze_body": False}]
    assert set(meta["versions"]) >= {"python", "torch", "transformers", "peft", "plastispoof"}
    assert "git_commit" in meta
    first, widen = meta["stages"]
    assert widen["params"] > first["params"] == first["trainable_params"]
    for summary in meta["stages"]:
        assert summary["forward_ms"] > 0 and summary["backward_ms"] > 0 and summary["steps"] == 2 * 3
        assert 0.0 <= summary["dev_eer"] <= 0.5
    assert meta["dev_threshold"] == widen["dev_threshold"]
    assert (run_dir / "plots/training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_decreases_and_metrics_are_logged_per_epoch(two_stage_run):
    run_dir, _, _ = two_stage_run
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [(r["stage"], r["epoch"]) for r in records] == [("first", 1), ("first", 2), ("widen", 1), ("widen", 2)]
    assert [r["step"] for r in records] == [3, 6, 9, 12]  # 24 trials / batch 8
    for record in records:
        assert {"train_loss", "dev_eer", "lr", "fwd_ms", "bwd_ms", "time"} <= set(record)
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[1]["lr"] < records[0]["lr"]  # cosine decay within a stage


def test_meta_rebuilds_the_trained_model_with_identical_scores(two_stage_run, corpus):
    run_dir, cfg, trained = two_stage_run
    rebuilt, meta = load_run_model(run_dir)
    assert rebuilt.body.out_features == 8 + 4  # the widen transform was replayed
    dev = read_dataset("asv19-la", corpus, "dev")
    batch = cfg.data.eval_batch_size  # as the trainer scored dev (other batch sizes differ in the last bits)
    scores = score_trials(rebuilt, dev, cfg.data.num_samples, batch, "cpu")
    assert scores == score_trials(trained, dev, cfg.data.num_samples, batch, "cpu")
    eer, threshold = compute_eer([scores[t.utt_id] for t in dev if t.label == "bonafide"],
                                 [scores[t.utt_id] for t in dev if t.label == "spoof"])
    assert (eer, threshold) == (meta["dev_eer"], meta["dev_threshold"])
    final = load_file(run_dir / "model.safetensors")
    assert all(torch.equal(final[name], value) for name, value in rebuilt.state_dict().items())


def test_same_seed_gives_the_same_run(tmp_path, corpus):
    runs = [train(tiny_config(tmp_path, corpus, name=name, train={"epochs": 2})) for name in ("a", "b")]
    a, b = (read_jsonl(run / "metrics.jsonl") for run in runs)
    assert without_timing(a) == without_timing(b)
    weights_a, weights_b = (load_file(run / "model.safetensors") for run in runs)
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    other = train(tiny_config(tmp_path, corpus, name="c", seed=8, train={"epochs": 2}))
    assert without_timing(read_jsonl(other / "metrics.jsonl")) != without_timing(a)


def test_early_stopping_ends_a_stage_without_dev_gain(tmp_path, corpus):
    run_dir = train(tiny_config(tmp_path, corpus, train={"epochs": 6, "early_stopping": 1}))
    records = read_jsonl(run_dir / "metrics.jsonl")
    eers = [r["dev_eer"] for r in records]
    assert len(records) < 6 and eers[-1] >= min(eers[:-1])
    assert json.loads((run_dir / "meta.json").read_text())["stages"][0]["epochs"] == len(records)


@pytest.mark.parametrize("select, kept_epoch", [("best", 1), ("last", 3)])
def test_select_chooses_the_weights_a_stage_ends_with(tmp_path, corpus, monkeypatch, select, kept_epoch):
    """The dev EERs are scripted (0.1, 0.3, 0.2: the best epoch is not the last), and the weights the model had
    when each was measured are kept: the run must end with the first epoch's weights (best) or the third's (last)."""
    import plastispoof.training.trainer as trainer_module

    scripted, seen = iter([0.1, 0.3, 0.2]), []

    def fake_dev_eer(model, *_args):
        seen.append({name: value.detach().clone() for name, value in model.state_dict().items()})
        return next(scripted), 0.0

    monkeypatch.setattr(trainer_module, "dev_eer", fake_dev_eer)
    run = train(tiny_config(tmp_path, corpus, train={"epochs": 3, "select": select}))
    summary = json.loads((run / "meta.json").read_text())["stages"][0]
    assert summary["best_epoch"] == kept_epoch and summary["dev_eer"] == [0.1, 0.3, 0.2][kept_epoch - 1]
    saved = load_file(run / "model.safetensors")
    assert all(torch.equal(saved[name], seen[kept_epoch - 1][name]) for name in saved)
    other = seen[2 if kept_epoch == 1 else 0]  # the epochs differ, so the check above could have failed
    assert any(not torch.equal(saved[name], other[name]) for name in saved)


def test_early_stopping_cannot_be_combined_with_select_last(tmp_path, corpus):
    with pytest.raises(InputError, match="early_stopping.*select: last"):
        tiny_config(tmp_path, corpus, train={"early_stopping": 2, "select": "last"})


def test_init_from_adopts_the_other_runs_transforms_and_weights(tmp_path, two_stage_run):
    source, cfg, _ = two_stage_run
    run_dir = train(tiny_config(tmp_path, Path(cfg.data.root), train={"epochs": 1},
                                strategy={"name": "tiny-two-stage", "args": {"init_from": str(source)}}))
    meta = json.loads((run_dir / "meta.json").read_text())
    assert len(meta["transforms"]) == 2  # the source's widen, then this run's
    model, _ = load_run_model(run_dir)
    assert model.body.out_features == 8 + 4 + 4


def test_init_from_a_run_of_another_model_fails_clearly(tmp_path, corpus):
    source = train(tiny_config(tmp_path, corpus, name="small", model={"args": {"hidden": 6}},
                               train={"epochs": 1}))
    cfg = tiny_config(tmp_path, corpus, name="big", strategy={"name": "tiny-two-stage",
                                                              "args": {"init_from": str(source)}})
    with pytest.raises(InputError, match="checkpoint is from another model: init_from .*shape"):
        train(cfg)


def test_fresh_run_on_an_existing_run_directory_fails(two_stage_run):
    _, cfg, _ = two_stage_run
    with pytest.raises(InputError, match="already exists.*--resume"):
        train(cfg)


def test_config_typos_name_the_key(tmp_path, corpus):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "tiny-test"}, "train": {"epoch": 3}}))
    with pytest.raises(InputError, match=r"train\.epoch: unknown key"):
        load_config(path)
    cfg = tiny_config(tmp_path, corpus, strategy={"name": "tiny-two-stage", "args": {"extar": 2}})
    with pytest.raises(InputError, match="'extar'"):
        train(cfg)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_missing_audio_is_reported_before_training(tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", counts={"train": (2, 2), "dev": (2, 2)})
    for flac in sorted((corpus / "LA" / "ASVspoof2019_LA_train" / "flac").glob("*.flac"))[:2]:
        flac.unlink()
    with pytest.raises(InputError, match="2 missing audio file"):
        train(tiny_config(tmp_path / "runs", corpus))
    assert not (tmp_path / "runs" / "run" / "metrics.jsonl").exists()


# ------------------------------------------------------------------------------------------ example configs


def _config_files() -> list[Path]:
    """Experiment configs only: recipes of several experiments (table1's `models`, unseen's and adaptation's
    `systems`, nes2net's `backends`, the trade-off's, the default detector's `train_corpus`) have their own tests,
    which build the experiments they hold."""
    def is_recipe(path: Path) -> bool:
        raw = yaml.safe_load(path.read_text()) or {}
        return bool({"models", "systems", "backends", "train_corpus"} & set(raw))

    return sorted(path for path in (REPO / "configs").rglob("*.yaml") if not is_recipe(path))


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_example_config_validates_and_names_registered_parts(path):
    from plastispoof.capacity.base import build_strategy
    from plastispoof.models.base import build_model

    cfg = load_config(path)
    # An unknown model or strategy fails here (InputError): a config naming a deleted method is an error.
    build_strategy(cfg.strategy.name, cfg.strategy.args)
    # Checks the constructor arguments without allocating the weights; AASIST (0.3 M parameters) computes its sinc
    # filters from CPU tensors at construction, so it is built on the CPU.
    device = "cpu" if cfg.model.name.startswith("aasist") else "meta"
    with torch.device(device):
        build_model(cfg.model.name, **without_pretrained(cfg.model.args))


def without_pretrained(args):
    """``args`` with every ``pretrained`` source removed: tests never download (or read) SSL weights."""
    if isinstance(args, dict):
        return {k: None if k == "pretrained" else without_pretrained(v) for k, v in args.items()}
    return args


@pytest.mark.slow
def test_cli_train_end_to_end(tmp_path, corpus):
    config = REPO / "configs" / "synthetic" / "grnn-baseline.yaml"
    command = [sys.executable, "-m", "plastispoof.cli", "train", str(config), "--set", f"data.root={corpus}",
               "--set", "data.dataset=asv19-la", "--set", f"output_dir={tmp_path}", "--set", "train.epochs=1",
               "--set", "data.num_samples=4800", "--set", "data.max_train=16"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "grnn-baseline"
    assert f"run directory: {run_dir}" in done.stdout
    assert json.loads((run_dir / "meta.json").read_text())["finished"]
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == 1


def test_a_data_rate_the_model_was_not_built_for_is_refused_before_training(tmp_path, corpus):
    cfg = tiny_config(tmp_path, corpus, model={"name": "grnn", "args": {"hidden_sizes": [4]}},
                      data={"sample_rate": 8000})
    with pytest.raises(InputError, match=r"model grnn works on 16000 Hz audio but data.sample_rate is 8000"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # refused before anything was written
