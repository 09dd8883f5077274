"""plastispoof stress: conditions degrade the audio as named, deterministically; the tables and chart are written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_run import grnn_config, write_tiny_corpus

from plastispoof.analysis import stress as stress_module
from plastispoof.analysis.stress import (
    CONDITIONS,
    Condition,
    _Babble,
    _DegradedDataset,
    check_conditions,
    packet_loss,
    stress,
    stress_command,
)
from plastispoof.augment import codecs
from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.inference import Detector
from plastispoof.models.base import SpoofModel
from plastispoof.training import train

RATE = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), seconds=0.5)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus):
    return train(grnn_config(tmp_path_factory.mktemp("runs"), corpus))


def eval_trials(corpus):
    return read_dataset("asv19-la", str(corpus), "eval")


def degraded(corpus, condition, length=RATE):
    trials = eval_trials(corpus)
    dataset = _DegradedDataset(trials, CONDITIONS[condition], [length], RATE, _Babble(trials, RATE))
    return trials, [dataset[i][0][0].numpy() for i in range(len(trials))]


def snr_db(clean, noisy):
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((noisy - clean).astype(np.float64) ** 2))


def test_the_issue_conditions_are_all_there():
    assert list(CONDITIONS) == [
        "clean", "mp3-32k", "mp3-64k", "opus-12k", "opus-24k", "aac-32k", "g711-mulaw", "g726", "g722", "amr-nb",
        "white-20db", "white-10db", "white-5db", "babble-10db", "reverb-0.3s", "reverb-0.8s", "loss-5pct",
        "loss-10pct", "gain-minus20db", "band-8k"]


@pytest.mark.parametrize("condition, target", [("white-20db", 20.0), ("white-5db", 5.0), ("babble-10db", 10.0)])
def test_noise_conditions_hit_their_snr(corpus, condition, target):
    trials, clean = degraded(corpus, "clean", 8000)
    _, noisy = degraded(corpus, condition, 8000)
    for x, y in zip(clean, noisy):
        assert abs(snr_db(x, y) - target) < 0.5


def test_babble_is_made_of_other_bona_fide_utterances(corpus):
    trials = eval_trials(corpus)
    babble = _Babble(trials, RATE)
    assert babble.trials and all(t.label == "bonafide" for t in babble.trials)
    babble.exclude = babble.trials[0].utt_id
    picked = []
    original = stress_module.load_audio
    try:
        stress_module.load_audio = lambda path, rate: picked.append(path) or original(path, rate)
        for seed in range(20):
            babble(4000, np.random.default_rng(seed))
    finally:
        stress_module.load_audio = original
    assert picked and babble.trials[0].path not in picked


def test_packet_loss_zeroes_that_share_of_20_ms_frames():
    x = np.ones(RATE, np.float32)  # 50 frames of 320 samples
    for fraction, frames in ((0.05, 2), (0.10, 5)):
        y = packet_loss(x, RATE, np.random.default_rng(0), fraction)
        zeroed = (y.reshape(50, 320) == 0).all(axis=1)
        assert zeroed.sum() == frames and (y.reshape(50, 320)[~zeroed] == 1).all()


def test_conditions_are_deterministic_per_utterance_and_keep_length(corpus):
    for condition in ("mp3-32k", "amr-nb", "white-10db", "reverb-0.8s", "loss-10pct", "band-8k"):
        _, first = degraded(corpus, condition)
        _, again = degraded(corpus, condition)
        assert all(np.array_equal(a, b) and a.shape == (RATE,) and np.isfinite(a).all() for a, b in zip(first, again))
    _, clean = degraded(corpus, "clean")
    _, quiet = degraded(corpus, "gain-minus20db")
    assert all(np.allclose(q, c * 0.1) for q, c in zip(quiet, clean))


def test_band_8k_removes_everything_above_4_khz(corpus):
    _, clean = degraded(corpus, "clean", 8000)  # the clips' own length: no repeat-padding seam
    _, narrow = degraded(corpus, "band-8k", 8000)
    freqs = np.fft.rfftfreq(8000, 1 / RATE)

    def high(signal: np.ndarray) -> float:  # share of the power above 4.2 kHz (Hann window: no leakage)
        power = np.abs(np.fft.rfft(signal * np.hanning(signal.size))) ** 2
        return power[freqs > 4200].sum() / power.sum()

    for x, y in zip(clean, narrow):
        assert high(y) < 1e-3 * high(x)


def test_stress_of_a_run_writes_tables_and_chart(run_dir, corpus, tmp_path):
    names = ["clean", "white-5db", "loss-10pct", "g711-mulaw"]
    report = stress(Detector.from_run(run_dir, device="cpu"), "asv19-la", corpus, conditions=names, out=tmp_path,
                    name="grnn", show_progress=False)
    assert [r["condition"] for r in report["conditions"]] == names
    clean = report["conditions"][0]
    assert clean["delta_eer_points"] == 0.0
    from plastispoof.evaluate import evaluate_run
    assert clean["eer"] == pytest.approx(evaluate_run(run_dir, "asv19-la", corpus)["eer"])  # clean = evaluate
    for row in report["conditions"]:
        assert row["delta_eer_points"] == pytest.approx(100 * (row["eer"] - clean["eer"]))
        assert row["min_tdcf"] is not None
    saved = json.loads((tmp_path / "stress.json").read_text())
    assert saved["conditions"] == json.loads(json.dumps(report["conditions"]))
    assert saved["mean_stressed_eer"] == pytest.approx(100 * np.mean([r["eer"] for r in report["conditions"][1:]]))
    csv_lines = (tmp_path / "stress.csv").read_text().splitlines()
    assert csv_lines[0] == "condition,group,eer_percent,delta_eer_points,min_tdcf" and len(csv_lines) == 5
    assert "| white-5db | white noise |" in (tmp_path / "stress.md").read_text()
    assert (tmp_path / "stress.png").read_bytes()[:4] == b"\x89PNG"


def test_clean_always_comes_first_and_is_not_repeated():
    assert check_conditions(["white-5db", "clean", "white-5db"]) == ["clean", "white-5db"]


class ZeroCrossings(SpoofModel):
    """A fixed 'detector': score = zero-crossing rate (noise raises it), so stress results are predictable."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, waveform):
        rate = (torch.diff(torch.sign(waveform), dim=1) != 0).float().mean(dim=1)
        return torch.stack([torch.zeros_like(rate), rate + 0 * self.dummy], dim=1)


def test_several_detectors_share_one_pass_and_match_single_runs(corpus):
    trials = eval_trials(corpus)
    one = Detector(ZeroCrossings(), 8000, device="cpu")
    two = Detector(ZeroCrossings(), 4000, device="cpu")
    together = stress_module.score_conditions({"a": one, "b": two}, trials, ["clean", "white-10db"],
                                              show_progress=False)
    alone = stress_module.score_conditions({"b": two}, trials, ["clean", "white-10db"], show_progress=False)
    assert together["b"] == alone["b"]
    # white noise at 10 dB raises the zero-crossing rate of every tonal (bona fide) utterance
    tonal = [t.utt_id for t in trials if t.label == "bonafide"]
    assert tonal and all(together["a"]["white-10db"][u] > together["a"]["clean"][u] for u in tonal)


def test_unknown_condition_lists_the_available_ones():
    with pytest.raises(InputError, match="unknown stress condition 'mp4-32k'; available: clean, mp3-32k, "):
        check_conditions(["clean", "mp4-32k"])


def test_a_condition_needing_a_missing_codec_names_it(monkeypatch):
    monkeypatch.setattr(codecs, "encoder_name", lambda name: None if name == "g726" else "x")
    with pytest.raises(InputError, match="codec 'g726' is missing from this machine's FFmpeg .*present: mp3"):
        check_conditions(["g726"])


def test_run_and_weights_together_is_an_error(run_dir, corpus):
    with pytest.raises(InputError, match="give one model: .* name two"):
        stress_command(run_dir, "aasist", "x.pth", "asv19-la", corpus, conditions=["clean"])


def test_foreign_weights(corpus, tmp_path):
    from plastispoof.models.base import build_model

    torch.save(build_model("aasist-l").state_dict(), tmp_path / "aasist-l.pth")
    trials = eval_trials(corpus)[:6]
    detector = Detector.from_weights("aasist-l", tmp_path / "aasist-l.pth", device="cpu")
    scores = stress_module.score_conditions({"aasist-l": detector}, trials, ["clean", "gain-minus20db"],
                                            show_progress=False)["aasist-l"]
    assert len(scores["clean"]) == len(scores["gain-minus20db"]) == 6
    assert all(np.isfinite(list(scores[c].values())).all() for c in scores)


def test_cli_stress_and_its_bad_input(run_dir, corpus, tmp_path):
    command = [sys.executable, "-m", "plastispoof.cli", "stress", str(run_dir), "--dataset", "asv19-la",
               "--root", str(corpus)]
    done = subprocess.run(command + ["--conditions", "clean,loud"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: unknown stress condition 'loud'; available: " + ", ".join(CONDITIONS)]
    done = subprocess.run(command + ["--conditions", "gain-minus20db", "--out", str(tmp_path / "s")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| gain-minus20db | level and band |" in done.stdout
    assert {p.name for p in (tmp_path / "s").iterdir()} == {"stress.md", "stress.csv", "stress.json", "stress.png"}


def test_an_onnx_export_is_stressed_like_its_run(run_dir, corpus, tmp_path):
    pytest.importorskip("onnxruntime")
    from plastispoof.onnx_export import export_onnx

    export_onnx(run_dir, tmp_path / "grnn.onnx")
    names = ["clean", "white-10db", "g711-mulaw"]
    onnx = stress_command(None, None, None, "asv19-la", corpus, conditions=names, onnx=tmp_path / "grnn.onnx")
    torch_report = stress(Detector.from_run(run_dir, device="cpu"), "asv19-la", corpus, conditions=names,
                          out=tmp_path / "torch", show_progress=False)
    assert onnx["files"]["json"] == str(tmp_path / "stress-grnn" / "stress.json")
    for a, b in zip(onnx["conditions"], torch_report["conditions"]):
        assert a["condition"] == b["condition"] and a["eer"] == pytest.approx(b["eer"], abs=1e-9)


def test_a_degradation_that_makes_nan_is_a_bug_that_raises(corpus):
    trials = eval_trials(corpus)
    broken = Condition("broken", "test", lambda x, rate, rng, babble: np.where(np.arange(x.size) == 5, np.inf, x))
    dataset = _DegradedDataset(trials, broken, [RATE], RATE, _Babble(trials, RATE))
    with pytest.raises(RuntimeError, match="degradation 'broken' made NaN or infinite samples"):
        dataset[0]
