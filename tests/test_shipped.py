"""The shipped default detector: package data, hash check, card, `score` with no model option, `models`, `info`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_main import run_main

from plastispoof import shipped
from plastispoof.errors import InputError

OFFICIAL_AASIST_SHA256 = "51d2d9cf0738172f61e2a384ec50a54a55363240f67c971ed55a92435bc1a1c0"
ASTERISK_FR = Path("/usr/share/asterisk/sounds/fr_CA_f_June")


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli("score", ...)``: the command through cli.main, as a user runs it (exit code, stdout, stderr)."""
    return lambda *args: run_main(monkeypatch, capsys, *args)


@pytest.fixture(scope="module")
def card() -> dict:
    return shipped.read_shipped_card("default")


@pytest.fixture
def prompt(tmp_path) -> Path:
    """A real recording: an Asterisk French prompt (CI installs asterisk-core-sounds-fr-wav)."""
    assert ASTERISK_FR.is_dir(), "CI installs asterisk-core-sounds-fr-wav"
    target = tmp_path / "prompt.wav"
    shutil.copyfile(ASTERISK_FR / "vm-goodbye.wav", target)
    return target


def test_default_is_package_data_with_the_files_its_card_hashes(card):
    assert "default" in shipped.shipped_names()
    folder = shipped.verify_shipped("default")
    for name in shipped.CHECKED_FILES:
        assert card["files"][name] == shipped.sha256_of(folder / name)
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 5_000_000  # the goal: <= 5 MB of package data
    notice = (folder / "NOTICE").read_text()
    assert "MIT" in notice and OFFICIAL_AASIST_SHA256 in notice and "NAVER" in notice
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "shipped/*/*" in pyproject  # installed by pip install, not only present in a checkout


def test_the_card_states_data_operating_point_heldout_results_and_limits(card):
    assert card["starts_from"]["sha256"] == OFFICIAL_AASIST_SHA256 and card["starts_from"]["licence"] == "MIT"
    data = card["training_data"]
    assert "en" not in data["languages"] and data["voices"] and all(v["language"] != "en" for v in data["voices"])
    assert set(data["families_held_out"]) & set(data["families_trained"]) == set()
    assert card["operating_point"]["name"] == "eer" and "bona fide" in card["operating_point"]["meaning"]
    for report in (card["heldout"], card["heldout_zero_shot"]):
        pooled = report["pooled"]
        assert 0.0 <= pooled["eer"] <= 1.0 and pooled["ci95"][0] <= pooled["eer"] <= pooled["ci95"][1]
        assert set(data["families_held_out"]) <= set(report["families"])  # every held-out family measured
    assert card["not_for"] and card["recipe"]["seed"] == 42


def test_models_lists_one_line_per_shipped_detector(cli):
    result = cli("models")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == len(shipped.shipped_names())
    assert lines[0].startswith("default") and "(default)" in lines[0] and "held-out English EER" in lines[0]


def test_info_default_prints_the_card_readably(card, cli):
    result = cli("info", "default")
    assert result.exit_code == 0, result.output
    text = result.output
    for needle in ("official AASIST", OFFICIAL_AASIST_SHA256, "held-out English", "zero-shot official AASIST",
                   "default operating point", "not for:", "English: none"):
        assert needle in text
    assert json.loads(cli("info", "default", "--json").output)["files"] == card["files"]


def test_score_without_a_model_uses_the_default_and_decides_calibrated(prompt, cli):
    result = cli("score", str(prompt), "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    calibration = json.loads((shipped.shipped_dir("default") / "calibration.json").read_text())
    assert row["llr"] == pytest.approx(calibration["slope"] * row["score"] + calibration["offset"], rel=1e-6)
    threshold = calibration["eer_threshold"]
    assert row["decision"] == ("bonafide" if row["score"] > threshold else "spoof")
    table = cli("score", str(prompt))
    assert table.exit_code == 0
    assert table.output.splitlines()[0].startswith("# model: shipped default")


def test_the_default_detector_loads_as_a_detector_object(prompt):
    detector = shipped.load_shipped()
    assert detector.calibration is not None and detector.shipped_name == "default"
    [result] = list(detector.iter_results([prompt]))
    assert result.error is None and result.decision in ("bonafide", "spoof")


def test_unknown_shipped_names_list_the_known_ones(prompt, cli):
    for args in (("info", "nosuch"), ("score", str(prompt), "--shipped", "nosuch")):
        result = cli(*args)
        assert result.exit_code == 2
        assert "default" in result.output and "nosuch" in result.output
    with pytest.raises(InputError, match="known: default"):
        shipped.shipped_dir("nosuch")


def test_shipped_with_another_model_option_is_refused(prompt, tmp_path, cli):
    result = cli("score", str(prompt), "--shipped", "default", "--run", str(tmp_path))
    assert result.exit_code == 2 and "--shipped" in result.output


@pytest.mark.parametrize("damage", ["corrupt", "replace"])
def test_a_corrupted_or_replaced_weights_file_is_refused(damage, prompt, tmp_path, monkeypatch, cli):
    copy = tmp_path / "shipped"
    shutil.copytree(shipped.SHIPPED_DIR / "default", copy / "default")
    weights = copy / "default" / "model.safetensors"
    if damage == "corrupt":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    else:
        weights.write_bytes(b"not the shipped weights")
    monkeypatch.setattr(shipped, "SHIPPED_DIR", copy)
    result = cli("score", str(prompt))
    assert result.exit_code == 2
    assert "model.safetensors has SHA-256" in result.output and "reinstall" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_audio_with_the_default_is_one_line_exit_2(tmp_path, cli):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio")
    result = cli("score", str(bad))
    assert result.exit_code == 2


def test_silence_is_scored_not_crashed(tmp_path, cli):
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16000), 16000)
    result = cli("score", str(quiet), "--json")
    assert result.exit_code in (0, 2)
    assert "Traceback" not in result.output
