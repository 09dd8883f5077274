"""LLR metrics (act DCF, Cllr, min Cllr), reliability diagrams, bootstrap EER intervals, and score fusion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from plastispoof.bootstrap import _weighted_eers, bootstrap_eer_cis, eer_cis_for_trials, resampling_unit
from plastispoof.data.trials import Trial
from plastispoof.errors import InputError
from plastispoof.fusion import fuse_score_files
from plastispoof.llr_metrics import reliability
from plastispoof.metrics import compute_eer, compute_report
from plastispoof.score_files import read_scores


def gaussian_llrs(rng, n, separation=2.0):
    """Scores of two unit Gaussians at +-separation/2, and their exact LLRs (separation * x)."""
    bonafide = rng.normal(separation / 2, 1, n)
    spoof = rng.normal(-separation / 2, 1, n)
    return separation * bonafide, separation * spoof


def test_unit_weights_give_compute_eer_exactly():
    rng = np.random.default_rng(0)
    bonafide = np.round(rng.normal(1, 1, 57), 1)  # rounded: many ties within and across classes
    spoof = np.round(rng.normal(-0.5, 1, 83), 1)
    b, s = np.sort(bonafide), np.sort(spoof)
    [eer] = _weighted_eers(b, s, np.ones((1, b.size)), np.ones((1, s.size)))
    assert eer == compute_eer(bonafide, spoof)[0]


def test_bootstrap_interval_covers_the_eer_and_narrows_with_more_trials():
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 1600):
        scores = np.r_[rng.normal(1, 1, n), rng.normal(-1, 1, n)]
        labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        intervals, unit = bootstrap_eer_cis(scores, labels, {"all": (labels, ~labels)}, resamples=300)
        low, high = intervals["all"]
        assert unit == "utterance" and low <= compute_eer(scores[labels], scores[~labels])[0] <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2.5  # 16x the trials: about a quarter of the width


def test_speakers_are_resampled_whole_and_widen_the_interval():
    rng = np.random.default_rng(2)
    trials, scores = [], {}
    for speaker in range(12):
        separation = rng.uniform(0, 3)  # some speakers are easy, some hard: their trials are not independent
        for i in range(40):
            label = "bonafide" if i < 20 else "spoof"
            utt = f"S{speaker:02d}_{i:02d}"
            trials.append(Trial(utt, Path(utt), label, attack="-" if i < 20 else "A01", speaker=f"spk{speaker}"))
            scores[utt] = rng.normal(separation if label == "bonafide" else -separation, 1)
    by_speaker = eer_cis_for_trials(trials, scores, resamples=400)
    anonymous = [Trial(t.utt_id, t.path, t.label, attack=t.attack) for t in trials]
    by_utterance = eer_cis_for_trials(anonymous, scores, resamples=400)
    assert by_speaker["bootstrap"]["unit"] == "speaker" and by_utterance["bootstrap"]["unit"] == "utterance"
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(by_speaker["eer_ci95"]) > 1.3 * width(by_utterance["eer_ci95"])
    assert by_speaker["per_attack_ci95"]["A01"] == by_speaker["eer_ci95"]  # the only attack: the same resamples
    assert resampling_unit(["a", "-", "b"]) == "utterance"


def test_reliability_of_true_llrs_lies_on_the_diagonal_and_overconfident_ones_do_not():
    rng = np.random.default_rng(3)
    bonafide, spoof = gaussian_llrs(rng, 20000)
    good = reliability(bonafide, spoof, bins=10)
    for predicted, observed, count in zip(good["predicted"], good["observed"], good["counts"]):
        if count > 500:
            assert abs(predicted - observed) < 0.03
    bad = reliability(3 * bonafide, 3 * spoof, bins=10)
    assert bad["observed"][1] - bad["predicted"][1] > 0.05  # too sure of spoof: more bona fide than predicted
    assert sum(good["counts"]) == 40000 and good["prior"] == 0.5


def test_report_of_llr_scores_adds_min_cllr_and_every_eer_gets_an_interval():
    rng = np.random.default_rng(4)
    bonafide, spoof = gaussian_llrs(rng, 200)
    trials = [Trial(f"b{i}", Path("x"), "bonafide") for i in range(200)] + [
        Trial(f"s{i}", Path("x"), "spoof", attack=f"A0{i % 2 + 1}") for i in range(200)]
    scores = {**{f"b{i}": v for i, v in enumerate(bonafide)}, **{f"s{i}": v for i, v in enumerate(spoof)}}
    report = compute_report(trials, scores, llr=True, bootstrap=200)
    assert report["scores_are_llr"] and report["min_cllr"] <= report["cllr"] < report["min_cllr"] + 0.05
    assert set(report["per_attack_ci95"]) == {"A01", "A02"}
    assert report["eer_ci95"][0] <= report["eer"] <= report["eer_ci95"][1]
    plain = compute_report(trials, scores)
    assert "min_cllr" not in plain and not plain["scores_are_llr"] and "eer_ci95" not in plain


# -------------------------------------------------------------------------------------------------- fusion


def write_system(path: Path, scores: dict[str, float]) -> Path:
    path.write_text("".join(f"{utt} {float(value)!r}\n" for utt, value in scores.items()))
    return path


@pytest.fixture
def two_systems(tmp_path):
    """Two systems each seeing half of the information: their fusion must beat both."""
    rng = np.random.default_rng(5)
    n = 300
    labels = np.r_[np.ones(n), np.zeros(n)]
    truth_a, truth_b = rng.normal(0, 1, 2 * n), rng.normal(0, 1, 2 * n)
    sign = np.where(labels == 1, 1, -1)
    a = sign * 0.8 + truth_a
    b = 3 * (sign * 0.8 + truth_b) + 4  # another scale and offset
    ids = [f"LA_D_{i:07d}" for i in range(2 * n)]
    key = tmp_path / "ASVspoof2019.LA.cm.dev.trl.txt"
    key.write_text("".join(f"LA_0001 {utt} - {'-' if lab else 'A01'} {'bonafide' if lab else 'spoof'}\n"
                           for utt, lab in zip(ids, labels)))
    eval_ids = {"LA_E_0000001": (1.0, 5.0), "LA_E_0000002": (-2.0, 0.0)}
    files = []
    for k, values in enumerate((a, b)):
        scores = dict(zip(ids, values.tolist())) | {utt: pair[k] for utt, pair in eval_ids.items()}
        files.append(write_system(tmp_path / f"system{k}.txt", scores))
    return files, key, labels, np.column_stack([a, b])


def test_fusion_matches_sklearn_and_beats_each_system(two_systems, tmp_path):
    from sklearn.linear_model import LogisticRegression

    files, key, labels, features = two_systems
    summary = fuse_score_files(files, key, tmp_path / "fused.txt")
    weights = np.where(labels == 1, 0.5 / labels.sum(), 0.5 / (labels.size - labels.sum()))
    reference = LogisticRegression(C=1e12, tol=1e-12, max_iter=10000).fit(features, labels, sample_weight=weights)
    np.testing.assert_allclose(summary["weights"], reference.coef_[0], rtol=1e-4)
    assert summary["offset"] == pytest.approx(reference.intercept_[0], abs=1e-4)
    assert summary["fused"]["dev_cllr"] < min(row["dev_cllr"] for row in summary["per_input"])
    fused = read_scores(tmp_path / "fused.txt")
    assert len(fused) == 602
    w, b = summary["weights"], summary["offset"]
    assert fused["LA_E_0000001"] == pytest.approx(w[0] * 1.0 + w[1] * 5.0 + b, abs=1e-6)
    assert json.loads((tmp_path / "fused.txt.fusion.json").read_text())["n_fused"] == 602


def test_fusion_refuses_mismatched_files_and_nan_scores(two_systems, tmp_path):
    files, key, _, _ = two_systems
    lines = files[1].read_text().splitlines()
    write_system(tmp_path / "short.txt", dict(line.split() for line in lines[:-1]))
    with pytest.raises(InputError, match="other utterances"):
        fuse_score_files([files[0], tmp_path / "short.txt"], key, tmp_path / "out.txt")
    broken = tmp_path / "nan.txt"
    broken.write_text("\n".join(lines[:3] + [lines[3].split()[0] + " nan"] + lines[4:]) + "\n")
    done = subprocess.run([sys.executable, "-m", "plastispoof.cli", "fuse", str(files[0]), str(broken),
                           "--dev-key", str(key), "--out", str(tmp_path / "out.txt")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and lines[3].split()[0] in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.txt").exists()


def test_cli_metrics_llr_reports_calibration_metrics_and_draws_the_diagram(two_systems, tmp_path):
    files, key, _, _ = two_systems
    fuse_score_files(files, key, tmp_path / "fused.txt")
    dev_only = tmp_path / "dev.txt"
    dev_only.write_text("".join(line + "\n" for line in (tmp_path / "fused.txt").read_text().splitlines()
                                if line.startswith("LA_D")))
    done = subprocess.run([sys.executable, "-m", "plastispoof.cli", "metrics", "--scores", str(dev_only),
                           "--protocol", str(key), "--llr", "--reliability", str(tmp_path / "rel.png"),
                           "--bootstrap", "200"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "min Cllr" in done.stdout and "95 % CI" in done.stdout
    assert (tmp_path / "rel.png").read_bytes()[:4] == b"\x89PNG"
    plain = subprocess.run([sys.executable, "-m", "plastispoof.cli", "metrics", "--scores", str(dev_only),
                            "--protocol", str(key), "--reliability", str(tmp_path / "x.png")],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and "--llr" in plain.stderr
