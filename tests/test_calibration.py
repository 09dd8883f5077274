"""Calibration (score -> LLR), operating points, and what `score` returns per file (llr, p_bonafide, decisions,
segments, JSON Lines), on a tiny run trained in a second."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from tiny_run import SAMPLE_RATE, bonafide_like, grnn_config, spoof_like, tiny_config, write_tiny_corpus

from plastispoof.calibrate import calibrate
from plastispoof.calibration import Calibration, decision_threshold, fit_calibration, fpr_threshold, read_calibration
from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.inference import Detector
from plastispoof.metrics import cllr, compute_eer, min_cllr
from plastispoof.results import window_starts
from plastispoof.training import train
from plastispoof.weights_hash import model_hash


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # dev files of 0.3 s: several 0.1 s windows each, so whole-file pooling differs from the first window
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), seconds=0.3)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus):
    return train(tiny_config(tmp_path_factory.mktemp("runs"), corpus))


@pytest.fixture(scope="module")
def calibrated(run_dir, corpus):
    return calibrate(run_dir, "asv19-la", corpus, "dev", device="cpu")


# ------------------------------------------------------------------------------------------ the fit itself


def test_the_fit_is_sklearns_prior_weighted_logistic_regression():
    rng = np.random.default_rng(0)
    bonafide, spoof = rng.normal(1.5, 1.2, 60), rng.normal(-0.5, 0.8, 140)
    fit = fit_calibration(bonafide, spoof, prior=0.3)
    # BOSARIS convention with sklearn: class weights prior / N and (1 - prior) / N, logit(prior) taken back out
    scores = np.r_[bonafide, spoof][:, None]
    labels = np.r_[np.ones(60), np.zeros(140)]
    weights = np.where(labels == 1, 0.3 / 60, 0.7 / 140)
    reference = LogisticRegression(C=1e12, tol=1e-12, max_iter=10000).fit(scores, labels, sample_weight=weights)
    assert fit.slope == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    assert fit.offset == pytest.approx(reference.intercept_[0] - math.log(0.3 / 0.7), abs=1e-4)


def test_calibration_lowers_cllr_to_near_min_cllr_and_keeps_the_ranking():
    rng = np.random.default_rng(1)
    bonafide, spoof = 5 + 3 * rng.normal(1, 1, 500), 5 + 3 * rng.normal(-1, 1, 500)  # shifted and stretched
    fit = fit_calibration(bonafide, spoof)
    data = fit.as_dict()
    assert data["cllr_before"] > 1.0 and data["cllr_after"] < 0.6
    assert data["min_cllr_after"] == pytest.approx(data["min_cllr_before"], abs=1e-9)  # monotone map
    assert data["min_cllr_after"] <= data["cllr_after"] < data["min_cllr_after"] + 0.05
    # two unit Gaussians at +-1 scaled by 3 and moved by 5: the true llr is 2 (x - 5) / 3
    assert fit.slope == pytest.approx(2 / 3, rel=0.1) and fit.offset == pytest.approx(-10 / 3, rel=0.1)


def test_min_cllr_is_cllr_of_the_pav_llrs_and_below_any_affine_calibration():
    rng = np.random.default_rng(2)
    bonafide, spoof = rng.normal(1, 1, 200), rng.normal(-1, 1.5, 300)
    best = min_cllr(bonafide, spoof)
    for slope, offset in ((1, 0), (2, 0.3), (0.5, -1)):
        assert best <= cllr(slope * bonafide + offset, slope * spoof + offset)


def test_one_class_and_non_finite_scores_are_refused():
    with pytest.raises(InputError, match="only bona fide"):
        fit_calibration([1.0, 2.0], [])
    with pytest.raises(InputError, match="NaN or infinite"):
        fit_calibration([1.0, float("nan")], [0.0])


def test_model_hash_follows_the_weights(run_dir):
    detector = Detector.from_run(run_dir, device="cpu")
    assert detector.model_hash == model_hash(Detector.from_run(run_dir, device="cpu").model)
    with __import__("torch").no_grad():
        next(detector.model.parameters()).add_(1e-3)
    assert model_hash(detector.model) != detector.model_hash  # computed once, before the change


# -------------------------------------------------------------------------------------- operating points


def test_fpr_threshold_accepts_at_most_that_share_of_dev_spoofs():
    rng = np.random.default_rng(3)
    spoof = rng.normal(size=1000)
    for rate in (0.001, 0.01, 0.05, 0.3):
        threshold = fpr_threshold(spoof, rate)
        accepted = np.mean(spoof > threshold)
        assert accepted <= rate + 1e-12
        assert np.mean(spoof >= threshold) > rate  # the lowest such threshold: one step down accepts too many
    with pytest.raises(InputError, match="cannot be reached"):
        fpr_threshold(spoof, 0.0001)


def test_operating_points_and_their_errors():
    cal = Calibration(2.0, -1.0, 0.5, "h", [1.0, 2.0, 3.0], [-1.0, 0.0, 1.5])
    assert decision_threshold("eer", cal, None) == ("score", compute_eer([1, 2, 3], [-1, 0, 1.5])[1])
    assert decision_threshold("bayes", cal, None, prior=0.2) == ("llr", pytest.approx(-math.log(0.25)))
    with pytest.raises(InputError, match="bayes needs LLRs"):
        decision_threshold("bayes", None, 0.3)
    with pytest.raises(InputError, match="cannot be reached"):
        decision_threshold("eer", None, None)
    with pytest.raises(InputError, match="unknown operating point"):
        decision_threshold("median", cal, None)
    with pytest.raises(InputError, match="strictly between"):
        decision_threshold("fpr=1.5", cal, None)


# ----------------------------------------------------------------------------------------- on a real run


def test_dev_scores_are_the_scores_score_returns(calibrated, run_dir, corpus):
    path, data = calibrated
    assert path == run_dir / "calibration.json" and data["convention"] == "window-mean"
    detector = Detector.from_run(run_dir, device="cpu")
    dev = read_dataset("asv19-la", corpus, "dev")
    bonafide = [detector.score_file(t.path) for t in dev if t.label == "bonafide"]
    # Equal up to float32 rounding: the windows of neighbouring files share a batch, and CPU kernels chosen by
    # batch size may round the last digit differently.
    assert data["dev_scores"]["bonafide"] == pytest.approx(bonafide, rel=1e-6, abs=1e-7)
    assert data["n_bonafide"] == 8 and data["n_spoof"] == 8
    assert data["model_hash"] == detector.model_hash
    assert data["dev_eer"] == compute_eer(data["dev_scores"]["bonafide"], data["dev_scores"]["spoof"])[0]


def test_score_returns_llr_probability_and_decisions(calibrated, run_dir, tmp_path):
    path, data = calibrated
    detector = Detector.from_run(run_dir, device="cpu")
    detector.use_calibration(read_calibration(path))
    rng = np.random.default_rng(5)
    sf.write(tmp_path / "a.wav", bonafide_like(rng, 4000), SAMPLE_RATE, subtype="FLOAT")
    [result] = list(detector.iter_results([tmp_path / "a.wav"], prior=0.1, operating_point="bayes"))
    llr = data["slope"] * result.score + data["offset"]
    assert result.llr == pytest.approx(llr, abs=1e-9)
    assert result.p_bonafide == pytest.approx(1 / (1 + math.exp(-(llr + math.log(0.1 / 0.9)))), abs=1e-12)
    assert result.decision == ("bonafide" if llr > math.log(9) else "spoof")
    assert result.duration_s == pytest.approx(0.25) and result.model == "tiny-test"
    assert result.model_hash == data["model_hash"]
    [at_eer] = list(detector.iter_results([tmp_path / "a.wav"], operating_point="eer"))
    assert at_eer.threshold == data["eer_threshold"]
    assert at_eer.decision == ("bonafide" if at_eer.score > data["eer_threshold"] else "spoof")


def test_a_calibration_of_other_weights_is_refused(calibrated, run_dir, corpus, tmp_path):
    path, _ = calibrated
    other = train(tiny_config(tmp_path, corpus, name="other", seed=8))
    detector = Detector.from_run(other, device="cpu")
    with pytest.raises(InputError, match="belongs to other weights"):
        detector.use_calibration(read_calibration(path))


def test_segments_give_a_timeline_whose_mean_is_the_score(calibrated, run_dir, tmp_path):
    detector = Detector.from_run(run_dir, device="cpu")
    detector.use_calibration(read_calibration(calibrated[0]))
    rng = np.random.default_rng(6)
    wave = np.concatenate([bonafide_like(rng, 3200), spoof_like(rng, 2500)])
    sf.write(tmp_path / "long.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", wave[:900], SAMPLE_RATE, subtype="FLOAT")
    long, short = detector.iter_results([tmp_path / "long.wav", tmp_path / "short.wav"], segments=True)
    starts = window_starts(len(wave), 1600)
    assert [s["start_s"] for s in long.segments] == [start / SAMPLE_RATE for start in starts]
    assert long.segments[-1]["end_s"] == pytest.approx(len(wave) / SAMPLE_RATE)
    windows = detector.windows(wave)
    for start, window in zip(starts, windows):
        np.testing.assert_array_equal(window, wave[start:start + 1600])
    assert long.score == pytest.approx(np.mean([s["score"] for s in long.segments]), abs=1e-9)
    assert long.score == pytest.approx(detector.score_file(tmp_path / "long.wav"), abs=1e-5)
    assert long.segments[0]["llr"] == pytest.approx(detector.calibration.llr(long.segments[0]["score"]))
    assert len(short.segments) == 1 and "repeat-padded to one 0.100 s window" in short.note
    # both are under the 1 s minimum the docs state (results.MIN_RELIABLE_SECONDS); only the short one is padded
    assert "under the 1 s minimum" in long.note and "padded" not in long.note


def test_read_calibration_refuses_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(InputError, match="not a plastispoof calibration"):
        read_calibration(tmp_path / "x.json")
    with pytest.raises(InputError, match="not found"):
        read_calibration(tmp_path / "missing.json")


def test_a_one_class_dev_set_leaves_the_old_calibration_untouched(calibrated, run_dir, tmp_path):
    corpus = write_tiny_corpus(tmp_path / "c", counts={"train": (2, 2), "dev": (3, 0), "eval": (1, 1)})
    before = (run_dir / "calibration.json").read_text()
    with pytest.raises(InputError, match="only bonafide"):
        calibrate(run_dir, "asv19-la", corpus, "dev", device="cpu")
    assert (run_dir / "calibration.json").read_text() == before


@pytest.mark.slow
def test_cli_calibrate_then_score_streams_json_lines(tmp_path, corpus):
    run = train(grnn_config(tmp_path / "runs", corpus))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "plastispoof.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=300)

    done = cli("calibrate", run, "--dataset", "asv19-la", "--root", corpus)
    assert done.returncode == 0, done.stderr
    assert "llr =" in done.stdout and (run / "calibration.json").is_file()
    folder = tmp_path / "audio"
    folder.mkdir()
    rng = np.random.default_rng(7)
    sf.write(folder / "a.flac", bonafide_like(rng, 12000), SAMPLE_RATE)
    sf.write(folder / "b.flac", spoof_like(rng, 9000), SAMPLE_RATE)
    done = cli("score", folder, "--run", run, "--json", "--operating-point", "fpr=0.125", "--segments")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path_name(r["path"]) for r in lines] == ["a.flac", "b.flac"]
    assert all(r["operating_point"] == "fpr=0.125" and r["llr"] is not None and r["segments"] for r in lines)
    done = cli("score", folder, "--run", run, "--operating-point", "fpr=0.01")
    assert done.returncode == 2 and "cannot be reached" in done.stderr and "Traceback" not in done.stderr
    table = cli("score", folder, "--run", run)
    assert table.returncode == 0 and "p_bonafide" in table.stdout.splitlines()[1]
    assert table.stdout.startswith("# grnn: decision at eer: bona fide when score > ")
    pictures = cli("score", folder / "a.flac", "--run", run, "--plot", tmp_path / "plots")
    assert pictures.returncode == 0 and (tmp_path / "plots" / "a.flac.png").is_file()


def Path_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


# ----------------------------------------------------------------------------------------- timeline picture


def test_timeline_figure_draws_the_window_llrs_against_the_threshold(calibrated, run_dir, tmp_path):
    from plastispoof.timeline import plot_timeline, timeline_figure, timeline_path

    detector = Detector.from_run(run_dir, device="cpu")
    detector.use_calibration(read_calibration(calibrated[0]))
    rng = np.random.default_rng(8)
    sf.write(tmp_path / "clip 1.wav", np.concatenate([bonafide_like(rng, 3000), spoof_like(rng, 3000)]),
             SAMPLE_RATE, subtype="FLOAT")
    [result] = detector.iter_results([tmp_path / "clip 1.wav"], segments=True, operating_point="eer")
    figure = timeline_figure(detector, result)
    wave_axes, spec_axes, score_axes = figure.axes[:3]
    assert len(wave_axes.lines[0].get_ydata()) == 6000 and spec_axes.images  # waveform and spectrogram
    curve, threshold_line = score_axes.lines[0], score_axes.lines[1]
    np.testing.assert_allclose(curve.get_ydata(), [s["llr"] for s in result.segments])
    np.testing.assert_allclose(curve.get_xdata(), [(s["start_s"] + s["end_s"]) / 2 for s in result.segments])
    assert threshold_line.get_ydata()[0] == pytest.approx(detector.calibration.llr(result.threshold))
    png = plot_timeline(detector, result, timeline_path(tmp_path / "plots", result.path))
    assert png == tmp_path / "plots" / "clip_1.wav.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------- evaluate --full


def test_evaluate_full_scores_whole_files_like_score_and_names_its_convention(run_dir, corpus):
    from plastispoof.evaluate import evaluate_run, format_metrics

    first = evaluate_run(run_dir, "asv19-la", corpus, "eval")
    full = evaluate_run(run_dir, "asv19-la", corpus, "eval", full=True)
    assert first["convention"] == "first-crop" and "ASVspoof convention" in format_metrics(first)
    assert full["convention"] == "window-mean" and full["files"]["scores"].endswith("asv19-la-eval-window-mean.txt")
    detector = Detector.from_run(run_dir, device="cpu")
    written = dict(line.split() for line in open(full["files"]["scores"]).read().splitlines())
    eval_trials = read_dataset("asv19-la", corpus, "eval")
    for trial in eval_trials:
        assert float(written[trial.utt_id]) == pytest.approx(detector.score_file(trial.path), abs=1e-6)
    first_scores = dict(line.split() for line in open(first["files"]["scores"]).read().splitlines())
    assert any(abs(float(first_scores[u]) - float(written[u])) > 1e-4 for u in written)  # 0.3 s files: 5 windows


def test_evaluate_applies_the_runs_calibration_only_to_scores_of_its_convention(calibrated, run_dir, corpus):
    from plastispoof.evaluate import evaluate_run, format_metrics
    from plastispoof.llr_metrics import llr_report

    _, data = calibrated
    full = evaluate_run(run_dir, "asv19-la", corpus, "eval", full=True, bootstrap=100)
    assert full["calibrated"]["applied"] and full["eer_ci95"][0] <= full["eer"] <= full["eer_ci95"][1]
    raw = dict(line.split() for line in open(full["files"]["scores"]).read().splitlines())
    llrs = dict(line.split() for line in open(full["files"]["llr_scores"]).read().splitlines())
    for utt, score in raw.items():
        assert float(llrs[utt]) == pytest.approx(data["slope"] * float(score) + data["offset"], abs=1e-6)
    trials = read_dataset("asv19-la", corpus, "eval")
    expected = llr_report([float(llrs[t.utt_id]) for t in trials if t.label == "bonafide"],
                          [float(llrs[t.utt_id]) for t in trials if t.label != "bonafide"])
    assert {k: full["calibrated"][k] for k in expected} == pytest.approx(expected, rel=1e-5)
    assert open(full["files"]["reliability"], "rb").read(4) == b"\x89PNG"
    assert "min Cllr" in format_metrics(full)
    first = evaluate_run(run_dir, "asv19-la", corpus, "eval", bootstrap=0)
    assert not first["calibrated"]["applied"] and "--full" in first["calibrated"]["why"]


def test_foreign_weights_calibrate_into_a_named_file(corpus, tmp_path):
    from plastispoof.models.base import build_model

    torch_module = __import__("torch")
    torch_module.manual_seed(0)
    torch_module.save(build_model("aasist-l").state_dict(), tmp_path / "aasist-l.pth")
    with pytest.raises(InputError, match="--out"):
        calibrate(None, "asv19-la", corpus, "dev", model="aasist-l", weights=tmp_path / "aasist-l.pth")
    path, data = calibrate(None, "asv19-la", corpus, "dev", model="aasist-l", weights=tmp_path / "aasist-l.pth",
                           out=tmp_path / "aasist-l.calibration.json", device="cpu")
    detector = Detector.from_weights("aasist-l", tmp_path / "aasist-l.pth", device="cpu")
    detector.use_calibration(read_calibration(path))  # the hash of the same weights matches
    assert data["model"] == "aasist-l" and data["n_bonafide"] == 8 and data["input"]["num_samples"] == 64600
