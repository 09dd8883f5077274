"""A decision threshold is only used on scores made the way it was computed: first crops (training's dev
scores) vs the mean over windows of whole files (Detector)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_run import tiny_config, write_tiny_corpus

from plastispoof.data.protocols import read_dataset
from plastispoof.inference import Detector
from plastispoof.metrics import compute_eer
from plastispoof.scoring import FIRST_CROP, WINDOW_MEAN, run_threshold, score_trials
from plastispoof.training import train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # 0.35 s files against 0.1 s windows: a Detector averages 6 windows where training scored the first one
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), seconds=0.35,
                             counts={"train": (12, 12), "dev": (10, 10), "eval": (1, 1)})


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus):
    return train(tiny_config(tmp_path_factory.mktemp("runs"), corpus, train={"epochs": 1}))


def test_the_run_names_the_convention_of_each_dev_threshold(run, corpus):
    meta = json.loads((run / "meta.json").read_text())
    detector = Detector.from_run(run, device="cpu")
    dev = read_dataset("asv19-la", corpus, "dev")
    first_crop = score_trials(detector.model, dev, detector.num_samples, 8, "cpu")
    whole_file = {t.utt_id: detector.score_file(t.path) for t in dev}

    def eer_threshold(scores):
        return compute_eer([scores[t.utt_id] for t in dev if t.label == "bonafide"],
                           [scores[t.utt_id] for t in dev if t.label != "bonafide"])[1]

    assert meta["dev_threshold_convention"] == FIRST_CROP
    assert meta["dev_thresholds"][FIRST_CROP] == meta["dev_threshold"] == pytest.approx(eer_threshold(first_crop))
    assert meta["dev_thresholds"][WINDOW_MEAN] == pytest.approx(eer_threshold(whole_file))
    assert abs(meta["dev_thresholds"][WINDOW_MEAN] - meta["dev_threshold"]) > 1e-4  # the case that matters


def test_the_detector_decides_at_the_threshold_of_its_own_scores(run):
    meta = json.loads((run / "meta.json").read_text())
    detector = Detector.from_run(run, device="cpu")
    assert detector.threshold == meta["dev_thresholds"][WINDOW_MEAN]
    assert detector.threshold != meta["dev_threshold"]  # never the first-crop one


def test_a_run_with_only_a_first_crop_threshold_gives_no_decisions_until_fitted(run, corpus, tmp_path):
    meta = json.loads((run / "meta.json").read_text())
    older = {key: value for key, value in meta.items() if key not in ("dev_thresholds", "dev_threshold_convention")}
    assert run_threshold(older) is None and run_threshold(older, FIRST_CROP) == meta["dev_threshold"]
    (run / "meta.json").write_text(json.dumps(older))
    try:
        detector = Detector.from_run(run, device="cpu")
    finally:
        (run / "meta.json").write_text(json.dumps(meta))
    dev = read_dataset("asv19-la", corpus, "dev")
    [result] = detector.score_paths([dev[0].path])
    assert detector.threshold is None and result.score is not None and result.decision is None
    eer, threshold = detector.fit_threshold(dev)
    assert threshold == pytest.approx(meta["dev_thresholds"][WINDOW_MEAN]) and 0 <= eer <= 1
    assert detector.score_paths([dev[0].path])[0].decision in ("bonafide", "spoof")
    assert np.isfinite(threshold)
