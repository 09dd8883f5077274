"""The model card: written by the trainer, the importer and calibrate in one format; `plastispoof info`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tiny_run import grnn_config

from plastispoof.calibrate import calibrate
from plastispoof.card import format_card, read_card
from plastispoof.errors import InputError
from plastispoof.runs import load_run_model
from plastispoof.training import train
from plastispoof.weights_hash import model_hash


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus):
    return train(grnn_config(tmp_path_factory.mktemp("runs"), corpus))


def test_a_finished_run_carries_its_card(run_dir, corpus):
    card = json.loads((run_dir / "card.json").read_text())
    meta = json.loads((run_dir / "meta.json").read_text())
    model, _ = load_run_model(run_dir)
    assert card["model"] == "grnn" and card["params"] == sum(p.numel() for p in model.parameters())
    assert card["training"]["dataset"] == "asv19-la" and card["training"]["train_subset"] == "train"
    assert card["training"]["dev_subset"] == "dev" and card["training"]["seed"] == 7
    assert [s["name"] for s in card["strategy"]["stages"]] == [s["name"] for s in meta["stages"]]
    assert card["dev_eer"] == meta["dev_eer"] and card["dev_thresholds"]["first-crop"] == meta["dev_threshold"]
    assert card["input"] == {"sample_rate": 16000, "num_samples": 4800, "seconds": 0.3, "channels": 1,
                             "pooling": card["input"]["pooling"]}
    assert "higher = more bona fide" in card["score_direction"] and "index 1 = bona fide" in card["score_direction"]
    assert card["git_commit"] == meta["git_commit"] and card["toolkit"] == meta["versions"]["plastispoof"]
    assert card["weights_sha256"] == model_hash(model) and card["calibration"] is None


def test_calibrate_adds_the_calibration_and_a_retrained_run_marks_it_stale(run_dir, corpus):
    _, data = calibrate(run_dir, "asv19-la", corpus, "dev", device="cpu")
    card = read_card(run_dir)
    assert card["calibration"]["slope"] == data["slope"] and card["calibration"]["n_spoof"] == data["n_spoof"]
    assert "dev_scores" not in card["calibration"]
    assert "llr =" in format_card(card)
    # weights replaced under the same run: the card no longer vouches for the calibration
    from plastispoof.card import write_run_card
    from plastispoof.runs import MODEL, read_weights, save_weights

    original = read_weights(run_dir / MODEL)
    try:
        save_weights({k: v + 1 if v.is_floating_point() else v for k, v in original.items()}, run_dir / MODEL)
        write_run_card(run_dir)
        assert "stale" in read_card(run_dir)["calibration"]
    finally:
        save_weights(original, run_dir / MODEL)
        write_run_card(run_dir)


def test_imported_weights_keep_their_source_in_the_shared_card(tmp_path):
    from plastispoof.models.base import build_model
    from plastispoof.pretrained import import_checkpoint

    torch.save(build_model("aasist-l").state_dict(), tmp_path / "AASIST-L.pth")
    run = import_checkpoint("aasist-l", tmp_path / "AASIST-L.pth", tmp_path / "imported")
    card = read_card(run)
    assert card["source"]["kind"] == "official-checkpoint" and card["trained_here"] is False
    assert card["training"] is None and card["card_version"] == 1 and card["input"]["num_samples"] == 64600
    assert "imported" in format_card(card)


def test_cli_info_prints_the_card_and_refuses_other_paths(run_dir, tmp_path):
    done = subprocess.run([sys.executable, "-m", "plastispoof.cli", "info", str(run_dir)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "grnn" in done.stdout and "higher = more bona fide" in done.stdout
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a model card"):
        read_card(tmp_path / "x.json")
    bad = subprocess.run([sys.executable, "-m", "plastispoof.cli", "info", str(tmp_path / "nothing")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
