"""Plasticity (Algorithm 1): train -> grow (everything trains) -> prune the added neurons -> train."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.capacity import Transform, apply_transforms, build_strategy
from plastispoof.capacity.dropin import Dropin
from plastispoof.capacity.growth import grown_modules
from plastispoof.capacity.plasticity import PruneAdded
from plastispoof.errors import InputError
from plastispoof.models.base import build_model, count_parameters

TINY = {"resnet18": {"width": 4}, "grnn": {"hidden_sizes": [6, 5, 4]}, "wav2vec2-small": {"num_layers": 1}}


def train_steps(model: nn.Module, steps: int) -> None:
    model.train()
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(2, 6000, generator=torch.Generator().manual_seed(0))
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(model(x), torch.tensor([0, 1])).backward()
        optimiser.step()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def test_stages_follow_algorithm_one():
    stages = build_strategy("plasticity", {"layers": "random", "num_layers": 2}).stages(5)
    assert [(s.name, s.epochs, s.init_from) for s in stages] == [("train", 5, None), ("grow", 5, None),
                                                                  ("prune", 5, None)]
    assert stages[0].transforms == []
    grow, = stages[1].transforms
    assert isinstance(grow, Dropin) and not grow.freeze_original and grow.options.num_layers == 2
    assert [t.kind for t in stages[2].transforms] == ["prune-added"]


def test_baseline_run_replaces_the_first_stage_and_epochs_can_differ():
    stages = build_strategy("plasticity", {"baseline_run": "runs/base", "epochs_grow": 2,
                                           "epochs_prune": 0}).stages(5)
    assert [(s.name, s.epochs, s.init_from) for s in stages] == [("grow", 2, "runs/base"), ("prune", 0, None)]


@pytest.mark.parametrize("options, key", [({"epochs": 3}, "epochs"), ({"count": 2, "ratio": 1.0}, "ratio"),
                                          ({"epochs_grow": -1}, "epochs_grow")])
def test_bad_options_are_input_errors(options, key):
    with pytest.raises(InputError, match=key):
        build_strategy("plasticity", options)


@pytest.mark.parametrize("name", TINY)
def test_plasticity_run_ends_with_the_original_architecture_and_changed_weights(name):
    torch.manual_seed(0)
    model = build_model(name, **TINY[name])
    baseline_count = count_parameters(model)
    baseline_trainable = {key for key, p in model.named_parameters() if p.requires_grad}
    train, grow, prune = build_strategy("plasticity", {"layers": "all"}).stages(1)
    generator = torch.Generator().manual_seed(42)

    train_steps(model, steps=1)
    after_train = snapshot(model)
    records = []
    for transform in grow.transforms:
        model = transform.apply(model, generator)
        records.append(transform.record())
    # The grown stage trains every weight, original ones included.
    assert {key.replace(".base.", ".") for key, p in model.named_parameters() if p.requires_grad} >= baseline_trainable
    assert count_parameters(model) > baseline_count
    train_steps(model, steps=2)
    for transform in prune.transforms:
        model = transform.apply(model, generator)
        records.append(transform.record())

    assert not grown_modules(model)
    assert count_parameters(model) == baseline_count
    assert {key for key, p in model.named_parameters() if p.requires_grad} == baseline_trainable
    after_prune = snapshot(model)
    assert after_prune.keys() == after_train.keys()
    moved = [key for key in baseline_trainable if not torch.equal(after_prune[key], after_train[key])]
    assert sorted(moved) == sorted(baseline_trainable)  # the grown phase updated every original weight
    train_steps(model, steps=1)  # the final stage trains the pruned model as usual

    replayed = apply_transforms(build_model(name, **TINY[name]), json.loads(json.dumps(records)))
    replayed.load_state_dict(model.state_dict(), strict=True)
    assert type(replayed) is type(model) and count_parameters(replayed) == baseline_count


def test_prune_added_record_round_trip_and_needs_growth():
    record = PruneAdded().record()
    assert record == {"kind": "prune-added"}
    assert isinstance(Transform.from_record(record), PruneAdded)
    with pytest.raises(InputError, match="no added neurons"):
        PruneAdded().apply(build_model("grnn", hidden_sizes=[4]))


@pytest.mark.slow
def test_trainer_runs_plasticity_then_frozen_dropin_from_it(tmp_path):
    from tiny_run import grnn_config, write_tiny_corpus

    from plastispoof.config import validate
    from plastispoof.runs import load_run_model
    from plastispoof.training import train

    def config(name: str, strategy: str, **args):
        base = grnn_config(tmp_path, corpus, name=name).model_dump()
        return validate({**base, "strategy": {"name": strategy, "args": args}})

    corpus = write_tiny_corpus(tmp_path / "corpus", seconds=0.3)
    plastic = train(config("plastic", "plasticity"))
    model, meta = load_run_model(plastic)
    assert [t["kind"] for t in meta["transforms"]] == ["dropin", "prune-added"]
    assert not grown_modules(model) and count_parameters(model) == count_parameters(
        build_model("grnn", hidden_sizes=[4]))

    frozen = train(config("frozen", "dropin-frozen", baseline_run=str(plastic)))
    grown, meta = load_run_model(frozen)
    assert [t["kind"] for t in meta["transforms"]] == ["dropin", "prune-added", "dropin"]
    assert meta["transforms"][-1]["sites"] == [["gru0", 4]]
    grown_state = grown.state_dict()
    for key, value in model.state_dict().items():  # the frozen stage left every original weight as it was
        wrapped = key.replace("grus.0.", "grus.0.base.").replace("head.", "head.base.")
        assert torch.equal(grown_state.get(key, grown_state.get(wrapped)), value), key
