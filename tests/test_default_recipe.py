"""`plastispoof reproduce default-detector` end to end on a tiny budget: corpora, import, training, calibration,
held-out report beside the zero-shot AASIST, shipped folder; the same seed gives the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_main import run_main

from plastispoof.analysis.default_detector import load_default_recipe, train_default, training_root
from plastispoof.data.protocols import read_dataset
from plastispoof.shipped import sha256_of

AASIST = Path(__file__).resolve().parents[2] / "shared/data/aasist/AASIST.pth"
needs_checkpoint = pytest.mark.skipif(not AASIST.is_file(), reason=f"official AASIST.pth not at {AASIST}")


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli("score", ...)``: the command through cli.main, as a user runs it (exit code, stdout, stderr)."""
    return lambda *args: run_main(monkeypatch, capsys, *args)


def tiny_recipe(tmp: Path) -> Path:
    """configs/default-detector.yaml cut to one French voice, one English test voice, three families and two
    training steps of 1 s crops."""
    recipe = load_default_recipe()
    recipe["train_corpus"] = {"recipe": "asterisk-world", "voices": ["fr_CA_f_June"], "max_utterances": 6,
                              "attacks": ["lpc", "world"], "tts": ["espeak-ng"], "out": str(tmp / "world")}
    recipe["test_corpus"] = {"recipe": "asterisk-en", "max_utterances": 3, "attacks": ["lpc", "world"], "tts": [],
                             "out": str(tmp / "english")}
    recipe["held_out_families"] = ["world", "flite"]
    recipe["train"]["data"].update({"num_samples": 16000, "batch_size": 2, "eval_batch_size": 4, "max_train": 4,
                                    "max_dev": 3})
    recipe["train"]["train"].update({"epochs": 2, "max_steps_per_epoch": 2})  # stop_after_epochs: 1 (the recipe)
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@needs_checkpoint
def test_the_recipe_runs_end_to_end_and_the_same_seed_gives_the_same_weights(tmp_path, cli):
    assert Path("/usr/share/asterisk/sounds/en_US_f_Allison").is_dir(), "needs asterisk-core-sounds-en-wav"
    config = tiny_recipe(tmp_path)
    result = cli(*["reproduce", "default-detector", "--weights", str(AASIST), "--config",
                                      str(config), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "| pooled |" in result.output and "zero-shot official AASIST" in result.output
    shipped = tmp_path / "a" / "shipped" / "default"
    card = json.loads((shipped / "card.json").read_text())
    assert card["files"]["model.safetensors"] == sha256_of(shipped / "model.safetensors")
    assert card["training_data"]["languages"] == ["fr"] and card["training_data"]["families_trained"] == [
        "lpc", "espeak-ng"]
    assert set(card["heldout"]["families"]) == {"lpc", "world"}  # English spoofs of every family of the test
    assert card["heldout"]["pooled"]["n_bonafide"] == 3 and card["heldout"]["pooled"]["n_spoof"] == 6
    assert "51d2d9cf" in (shipped / "NOTICE").read_text()
    # In-domain: the training root's eval trials (never trained on), scored by both detectors, per family.
    root = training_root(load_default_recipe(config), tmp_path / "world")
    evaluated = read_dataset("asv19-la", str(root), "eval")
    for system in ("default", "zero_shot"):
        pooled = card["in_domain"][system]["pooled"]
        assert (pooled["n_bonafide"], pooled["n_spoof"]) == (
            sum(t.label == "bonafide" for t in evaluated), sum(t.label != "bonafide" for t in evaluated))
    assert "training voices' eval trials" in result.output
    meta = json.loads((tmp_path / "a" / "default-detector" / "meta.json").read_text())
    assert meta["finished"] and [s["epochs"] for s in meta["stages"]] == [1]  # stopped after 1 of 2 epochs
    run_b, _, _ = train_default(load_default_recipe(config), AASIST, tmp_path / "b")
    run_a = tmp_path / "a" / "default-detector"
    assert sha256_of(run_b / "model.safetensors") == sha256_of(run_a / "model.safetensors")


def test_a_checkpoint_that_is_not_the_official_aasist_is_refused(tmp_path, cli):
    fake = tmp_path / "AASIST.pth"
    fake.write_bytes(b"something else")
    result = cli(*["reproduce", "default-detector", "--weights", str(fake), "--config",
                                      str(tiny_recipe(tmp_path)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not the official AASIST.pth" in result.output
