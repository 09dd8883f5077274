"""Checkpoints and resuming: a killed run, resumed, ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_run import tiny_config, without_timing
from torch import nn

from plastispoof import runs
from plastispoof.errors import InputError
from plastispoof.runs import flatten_state, load_run_model, read_jsonl, unflatten_state
from plastispoof.training import train


def two_stage_config(out, corpus, name):
    # Shuffled batches, dropout, a transform between stages: every piece of state a resume must restore.
    return tiny_config(out, corpus, name=name, strategy={"name": "tiny-two-stage", "args": {}},
                       model={"args": {"hidden": 8, "dropout": 0.3}})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus):
    return train(two_stage_config(tmp_path_factory.mktemp("runs"), corpus, "whole"))


def kill_after_checkpoints(monkeypatch, count: int) -> None:
    """Make the run die (as on Ctrl-C) right after its ``count``-th checkpoint was written."""
    written = []
    save = runs.save_checkpoint

    def save_then_maybe_die(*args, **kwargs):
        save(*args, **kwargs)
        written.append(1)
        if len(written) == count:
            raise KeyboardInterrupt

    monkeypatch.setattr(runs, "save_checkpoint", save_then_maybe_die)


# Checkpoints of a 2 x 2-epoch run: 1 = stage 0 epoch 1, 2 = end of stage 0, 3 = stage 1 epoch 1.
@pytest.mark.parametrize("killed_after, stage, epoch", [(1, 0, 1), (2, 1, 0), (3, 1, 1)])
def test_resumed_run_matches_the_uninterrupted_one(tmp_path, corpus, uninterrupted, monkeypatch, capsys,
                                                   killed_after, stage, epoch):
    cfg = two_stage_config(tmp_path, corpus, "killed")
    with monkeypatch.context() as patch:
        kill_after_checkpoints(patch, killed_after)
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    assert not (cfg.run_dir / "model.safetensors").exists()
    capsys.readouterr()
    train(cfg, resume=True)
    assert f"at stage {stage}, epoch {epoch}" in capsys.readouterr().err

    whole, resumed = load_file(uninterrupted / "model.safetensors"), load_file(cfg.run_dir / "model.safetensors")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)
    assert without_timing(read_jsonl(cfg.run_dir / "metrics.jsonl")) == \
        without_timing(read_jsonl(uninterrupted / "metrics.jsonl"))
    meta_whole, meta_resumed = (json.loads((run / "meta.json").read_text()) for run in (uninterrupted, cfg.run_dir))
    assert meta_resumed["dev_eer"] == meta_whole["dev_eer"]
    assert meta_resumed["dev_threshold"] == meta_whole["dev_threshold"]
    assert meta_resumed["transforms"] == meta_whole["transforms"]
    assert without_timing(meta_resumed["stages"]) == without_timing(meta_whole["stages"])


def test_resuming_a_finished_run_does_nothing_and_says_so(uninterrupted, corpus, capsys):
    before = {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*") if p.is_file()}
    cfg = two_stage_config(uninterrupted.parent, corpus, "whole")
    assert train(cfg, resume=True) == uninterrupted
    assert "already finished" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*") if p.is_file()} == before
    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": cfg.train.epochs + 1})})
    with pytest.raises(InputError, match=r"train\.epochs: \d+ -> \d+"):  # finished, but not this experiment
        train(longer, resume=True)


def test_resuming_with_another_config_fails(tmp_path, corpus, monkeypatch):
    cfg = two_stage_config(tmp_path, corpus, "run")
    with monkeypatch.context() as patch:
        kill_after_checkpoints(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    changed = tiny_config(tmp_path, corpus, name="run", strategy={"name": "tiny-two-stage", "args": {}},
                          model={"args": {"hidden": 8, "dropout": 0.3}}, train={"epochs": 2, "lr": 0.5})
    with pytest.raises(InputError, match=r"train\.lr: 0\.02 -> 0\.5"):
        train(changed, resume=True)


def test_optimizer_and_rng_state_round_trip_without_pickle(tmp_path):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(), "best": None}
    runs.save_checkpoint(tmp_path, model.state_dict(), state)
    weights, restored = runs.load_checkpoint(tmp_path)
    assert json.loads((tmp_path / "checkpoints" / "last.json").read_text())["best"] is None
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    copy = torch.optim.Adam(nn.Linear(3, 2).parameters(), lr=0.5)
    copy.load_state_dict(restored["optimizer"])
    assert copy.param_groups[0]["lr"] == 0.1
    for original, loaded in zip(optimizer.state.values(), copy.state.values()):
        assert all(torch.equal(original[k], loaded[k]) for k in original)
    random.setstate(restored["python"])
    np.random.set_state(restored["numpy"])
    torch.set_rng_state(restored["torch"])
    draws = (random.random(), np.random.rand(), torch.rand(1))
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    assert draws == (random.random(), np.random.rand(), torch.rand(1))
    skeleton, tensors = flatten_state({"__tensor__": 1})  # a key that looks like our markers stays a key
    assert unflatten_state(skeleton, tensors) == {"__tensor__": 1}


def test_weights_of_another_model_are_refused(uninterrupted):
    (uninterrupted.parent / "other").mkdir()
    other = uninterrupted.parent / "other"
    for name in ("meta.json", "config.yaml"):
        (other / name).write_bytes((uninterrupted / name).read_bytes())
    runs.save_weights(nn.Linear(3, 2).state_dict(), other / "model.safetensors")
    with pytest.raises(InputError, match="checkpoint is from another model: .*missing tensors"):
        load_run_model(other)


def test_a_checkpoint_written_before_best_tracking_had_its_own_object_still_loads():
    from plastispoof.training.progress import RunProgress

    progress = RunProgress(stage=1, epoch=2, global_step=7, transforms=[{"kind": "dropin"}])
    progress.best.keep(0.125, 2, 0.5, "stages/1-dropin/model.safetensors")
    progress.best.miss()
    state = progress.state()
    best = state.pop("best")
    older = {**state, **{f"best_{key}": best[key] for key in ("eer", "threshold", "epoch", "weights")},
             "bad_epochs": best["bad_epochs"]}
    assert RunProgress.from_state(older) == RunProgress.from_state(progress.state()) == progress
