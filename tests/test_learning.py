"""A detector learns: the GRNN (LFCC + GRU), seeded, trained for a few epochs on a small two-class corpus, reaches
a dev EER far below chance, while the same network with a learning rate of 0 stays at chance."""

from __future__ import annotations

import json

import pytest
from tiny_run import tiny_config, write_tiny_corpus

from plastispoof.training import train

# The stated goal: at most 10 % dev EER (chance: 50 %) after 6 epochs of 10 steps.
GOAL_EER = 0.10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # 40 + 40 training files of 0.5 s (harmonic tones vs. noise with a faint tone), 20 + 20 dev files
    return write_tiny_corpus(tmp_path_factory.mktemp("learn"), seconds=0.5, seed=3,
                             counts={"train": (40, 40), "dev": (20, 20), "eval": (4, 4)})


def grnn(out, corpus, lr: float):
    return tiny_config(out, corpus, name=f"grnn-lr{lr}", seed=1, data={"num_samples": 8000, "batch_size": 8},
                       model={"name": "grnn", "args": {"hidden_sizes": [8]}},
                       train={"epochs": 6, "lr": lr, "warmup_steps": 0})


@pytest.mark.slow
def test_the_grnn_learns_to_a_dev_eer_far_below_chance(tmp_path, corpus):
    learned = json.loads((train(grnn(tmp_path, corpus, 0.03)) / "meta.json").read_text())
    frozen = json.loads((train(grnn(tmp_path, corpus, 0.0)) / "meta.json").read_text())
    assert learned["dev_eer"] <= GOAL_EER
    assert frozen["dev_eer"] >= 0.40  # the same network and seed, untrained: the learning did it
