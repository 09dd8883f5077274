"""`reproduce nes2net`: back-ends trained on the frozen features of an encoder trained here, with their cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_run import write_tiny_corpus

from plastispoof.analysis.nes2net import backend_macs, reproduce_nes2net
from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.metrics import trials_eer
from plastispoof.models.flops import count_flops
from plastispoof.models.ssl import SSLFrontend
from plastispoof.runs import load_run_model, read_run_config
from plastispoof.score_files import read_scores

# 64-wide features: Nes2Net's 8 groups of 8 channels, its inner scale 8
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
        "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), seconds=0.5)


@pytest.fixture(scope="module")
def comparison(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("nes2net")
    encoder_overrides = [f"model.args.architecture={json.dumps(TINY)}", "train.epochs=1", "data.num_samples=8000",
                         "data.batch_size=8"]
    table = reproduce_nes2net(corpus, out, seeds=(1, 2), epochs=1, backends=["ssl-nes2net", "ssl-aasist"],
                              overrides=["data.num_samples=8000", "data.batch_size=8", "data.eval_batch_size=16"],
                              encoder_overrides=encoder_overrides)
    return out, table


def test_every_back_end_reads_the_trained_encoders_weights_frozen(comparison):
    out, _ = comparison
    encoder, _ = load_run_model(out / "encoder-wav2vec2-small")
    summary = json.loads((out / "nes2net.json").read_text())
    assert [row["backend"] for row in summary["rows"]] == ["ssl-nes2net", "ssl-aasist"]
    for row in summary["rows"]:
        assert row["seeds"] == [1, 2] and len(row["runs"]) == 2
        model, meta = load_run_model(row["runs"][0])
        assert meta["model"]["args"]["frontend"]["pretrained"] is None  # the run stands alone
        trained = encoder.ssl.state_dict()
        assert all(torch.equal(trained[k], v) for k, v in model.frontend.ssl.state_dict().items())
        assert meta["trainable_params"] == sum(p.numel() for p in model.backend.parameters())  # encoder frozen
        assert row["backend_params"] == meta["trainable_params"] < row["total_params"]
        assert row["epoch_s"] > 0
        # the row's EER is the mean of its runs' eval EERs, recomputed here from their score files
        eers = []
        for run in row["runs"]:
            cfg = read_run_config(run)
            scores = read_scores(Path(run) / "scores" / f"{cfg.data.dataset}-eval.txt")
            trials = [t for t in read_dataset(cfg.data.dataset, cfg.data.root, "eval") if t.utt_id in scores]
            eers.append(100 * trials_eer(trials, scores)[0])
        assert len(trials) > 4 and row["eer"] == pytest.approx(np.mean(eers), abs=1e-9)
    assert any((out / "features").rglob("*.safetensors"))  # features encoded once, on disk


def test_the_macs_are_the_back_ends_own_on_4_s_of_features(comparison):
    out, table = comparison
    summary = json.loads((out / "nes2net.json").read_text())
    row = summary["rows"][1]
    model, _ = load_run_model(row["runs"][0])
    features = model.eval().frontend(torch.zeros(1, 64000))
    assert row["backend_macs"] == count_flops(model.backend, features) // 2 == backend_macs(model, 16000)
    assert features.shape[1] == 64  # the encoder's width, read without a reduction layer
    assert "ssl-nes2net" in table and "100.0 %" in table  # MACs relative to reduction + AASIST


def test_bad_inputs_are_one_line_errors(corpus, tmp_path):
    with pytest.raises(InputError, match="known: ssl-nes2net"):
        reproduce_nes2net(corpus, tmp_path, backends=["nope"])
    from tiny_run import tiny_config

    from plastispoof.runs import with_encoder_folders
    from plastispoof.training import train

    run = train(tiny_config(tmp_path / "runs", corpus))
    with pytest.raises(InputError, match="holds no wav2vec2 encoder"):  # a config naming a run without one
        with_encoder_folders({"frontend": {"kind": "wav2vec2", "pretrained": str(run)}})
    with pytest.raises(InputError, match="is a plastispoof run directory"):  # models read folders, not runs
        SSLFrontend(kind="wav2vec2", pretrained=str(run))
    result = subprocess.run([sys.executable, "-m", "plastispoof.cli", "reproduce", "nes2net", "--root", str(corpus),
                             "--seeds", "4x"], capture_output=True, text=True)
    assert result.returncode == 2 and "--seeds takes whole numbers" in result.stderr


def test_every_back_end_of_the_recipe_makes_a_valid_config_of_a_registered_model(tmp_path):
    from plastispoof.analysis.nes2net import RECIPE, backend_config
    from plastispoof.analysis.recipes import load_recipe
    from plastispoof.registry import MODELS

    recipe = load_recipe(RECIPE)
    for backend in recipe["backends"]:
        cfg = backend_config(recipe, backend, tmp_path / "corpus", tmp_path / "out", 7, "/runs/encoder", None, [])
        assert MODELS.get_or_fail(cfg.model.name) and cfg.model.args["frontend"]["freeze"] is True
        assert cfg.data.feature_cache == str(tmp_path / "out" / "features") and cfg.seed == 7
