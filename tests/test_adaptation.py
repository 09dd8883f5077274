"""The continual-adaptation split of the embedded corpus: speaker-disjoint parts, new attacks to adapt on and
test learning, old attacks to test forgetting, readable by the corpus reader, written by `synth --adaptation`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plastispoof.data.adaptation import write_adaptation_split
from plastispoof.data.protocols import read_dataset
from plastispoof.data.synthetic import SEEN_ATTACKS, write_corpus
from plastispoof.errors import InputError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("synthetic"), profile="tiny", seed=3)


def test_the_split_is_speaker_disjoint_and_separates_new_from_old_attacks(corpus):
    split = write_adaptation_split(corpus, fraction=0.5, seed=1)
    train, dev, learning = (read_dataset("synthetic", split, subset) for subset in ("train", "dev", "eval"))
    forgetting = read_dataset("synthetic", split / "old-attacks", "eval")  # audio found through the links
    adapting, held_out = {t.speaker for t in train + dev}, {t.speaker for t in learning}
    assert adapting and held_out and not adapting & held_out  # no voice both adapted on and tested
    assert {t.speaker for t in forgetting} == held_out
    assert not {t.utt_id for t in train} & {t.utt_id for t in dev}
    for part in (train, dev, learning):
        attacks = {t.attack for t in part if t.label == "spoof"}
        assert attacks and not attacks & set(SEEN_ATTACKS) and {t.label for t in part} == {"bonafide", "spoof"}
    assert {t.attack for t in forgetting if t.label == "spoof"} <= set(SEEN_ATTACKS)
    eval_ids = {t.utt_id for t in read_dataset("synthetic", corpus, "eval")}
    bonafide_held_out = {t.utt_id for t in learning if t.label == "bonafide"}
    assert bonafide_held_out == {t.utt_id for t in forgetting if t.label == "bonafide"} and bonafide_held_out
    every = {t.utt_id for part in (train, dev, learning, forgetting) for t in part}
    assert every <= eval_ids  # the split only re-labels eval trials
    summary = json.loads((split / "split.json").read_text())
    assert summary["counts"]["learning_eval"]["spoof"] == sum(t.label == "spoof" for t in learning)
    assert sorted(summary["speakers"]["held_out"]) == sorted(held_out)


def test_the_same_corpus_fraction_and_seed_give_the_same_split(corpus, tmp_path):
    first = (write_adaptation_split(corpus, 0.5, seed=1) / "split.json").read_text()
    again = (write_adaptation_split(corpus, 0.5, seed=1) / "split.json").read_text()
    other = (write_adaptation_split(corpus, 0.5, seed=2) / "split.json").read_text()
    assert first == again
    assert json.loads(first)["speakers"] != json.loads(other)["speakers"]


def test_bad_fractions_and_missing_corpora_are_one_line_errors(corpus, tmp_path):
    with pytest.raises(InputError, match="too few"):
        write_adaptation_split(corpus, fraction=0.9)  # 4 eval speakers: none would be held out
    with pytest.raises(InputError, match="no embedded corpus"):
        write_adaptation_split(tmp_path)
    result = subprocess.run([sys.executable, "-m", "plastispoof.cli", "synth", "--out", str(tmp_path / "c"),
                             "--adaptation", "1.5"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --adaptation must be between 0 and 1, got 1.5"]
    assert not (tmp_path / "c").exists()  # refused before any audio was written
