"""`plastispoof adapt` end to end on a handful of real recordings (Asterisk French prompts), and its refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_main import run_main

from plastispoof import shipped
from plastispoof.adapt import minimum_files, split_files

ASTERISK_FR = Path("/usr/share/asterisk/sounds/fr_CA_f_June")
PROMPTS = ["vm-goodbye", "vm-intro", "vm-message", "vm-messages", "vm-password", "vm-incorrect", "vm-saved",
           "vm-deleted", "vm-first", "vm-last", "vm-next", "vm-no", "vm-for", "vm-from", "vm-received",
           "vm-options", "vm-to"]


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli("score", ...)``: the command through cli.main, as a user runs it (exit code, stdout, stderr)."""
    return lambda *args: run_main(monkeypatch, capsys, *args)


def folder_of(tmp_path: Path, n: int) -> Path:
    assert ASTERISK_FR.is_dir(), "CI installs asterisk-core-sounds-fr-wav"
    folder = tmp_path / f"calls{n}"
    folder.mkdir()
    available = [p for p in PROMPTS if (ASTERISK_FR / f"{p}.wav").is_file()]
    for name in available[:n]:
        shutil.copyfile(ASTERISK_FR / f"{name}.wav", folder / f"{name}.wav")
    assert len(list(folder.iterdir())) == n
    return folder


def test_split_is_by_file_seeded_and_holds_out_the_share():
    subsets = split_files(20, 0.3, seed=1)
    assert subsets.count("eval") == 6 and subsets.count("dev") == 3 and subsets.count("train") == 11
    assert subsets == split_files(20, 0.3, seed=1) != split_files(20, 0.3, seed=2)
    assert minimum_files(0.3) == 12 and round(0.3 * 12) == 4 and round(0.3 * 11) == 3


def test_adapt_end_to_end_on_real_recordings(tmp_path, cli):
    folder = folder_of(tmp_path, 14)
    out = tmp_path / "adapted"
    result = cli("adapt", "--bonafide", str(folder), "--out", str(out), "--families", "lpc,codec",
                 "--epochs", "1", "--language", "fr", "--set", "train.max_steps_per_epoch=2",
                 "--set", "data.batch_size=4")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "adapt.json").read_text())
    assert report["files"] == {"train": 8, "dev": 2, "eval": 4}
    for side in ("before", "after"):  # the same held-out trials scored by both detectors
        pooled = report[side]["pooled"]
        assert pooled["n_bonafide"] == 4 and pooled["n_spoof"] == 8
        assert set(report[side]["families"]) == {"lpc", "codec"}
    assert "before (shipped default)" in result.output and "family lpc" in result.output
    card = json.loads((out / "run" / "card.json").read_text())
    assert card["adapted"]["start"] == "shipped default" and card["calibration"]["n_bonafide"] == 4
    meta = json.loads((out / "run" / "meta.json").read_text())
    start = json.loads((shipped.shipped_dir("default") / "meta.json").read_text())
    assert meta["strategy"]["name"] == "dropin-frozen"
    assert meta["transforms"][:-1] == start.get("transforms", []) and meta["transforms"][-1]["kind"] == "dropin"
    scored = cli("score", "--run", str(out / "run"), str(folder / "vm-goodbye.wav"), "--json")
    assert scored.exit_code == 0 and json.loads(scored.stdout.splitlines()[-1])["decision"] in ("bonafide", "spoof")


def test_adapt_refuses_a_folder_too_small_to_measure(tmp_path, cli):
    result = cli("adapt", "--bonafide", str(folder_of(tmp_path, 5)), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "has 5 usable recording(s); adapt needs 12" in result.output


def test_adapt_refuses_families_that_would_leave_one_class(tmp_path, cli):
    result = cli("adapt", "--bonafide", str(folder_of(tmp_path, 14)), "--out", str(tmp_path / "o"),
                 "--families", "flite,festival", "--language", "fr")
    assert result.exit_code == 2 and "one class only" in result.output


def test_adapt_refuses_a_start_it_cannot_grow(tmp_path, cli):
    run_dir = tmp_path / "resnet-run"
    run_dir.mkdir()
    (run_dir / "meta.json").write_text(json.dumps({"model": {"name": "resnet18", "args": {}}}))
    result = cli("adapt", "--bonafide", str(folder_of(tmp_path, 14)), "--out", str(tmp_path / "o"),
                 "--from", str(run_dir))
    assert result.exit_code == 2
    assert "a resnet18 model; the adapt recipe grows" in result.output
    result = cli("adapt", "--bonafide", str(tmp_path), "--out", str(tmp_path / "o"), "--from", "nosuch")
    assert result.exit_code == 2 and "not a shipped detector (default)" in result.output
