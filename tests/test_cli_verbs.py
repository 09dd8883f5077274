"""The verbs that run whole pipelines, each once through the real command line on tiny settings: demo,
reproduce table1, export (then score --onnx), gradcam. (experts: tests/test_molex.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_run import run_cli

# Every run small: two optimiser steps an epoch, few eval trials, 1 s inputs.
TINY = ["--epochs", "1", "--set", "train.max_steps_per_epoch=2", "--set", "data.num_samples=16000",
        "--set", "data.batch_size=8", "--set", "data.max_eval=12", "--set", "data.max_dev=12"]


@pytest.mark.slow
def test_reproduce_table1_export_score_onnx_and_gradcam(capsys, tmp_path, tiny_corpus):
    out = tmp_path / "t1"
    code, text, err = run_cli(capsys, "reproduce", "table1", "--dataset", "synthetic", "--root", tiny_corpus,
                              "--models", "resnet18,grnn", "--strategies", "baseline", "--seeds", "42",
                              "--out", out, *TINY)
    assert code == 0, err
    rows = json.loads((out / "synthetic" / "table1.json").read_text())
    assert [(r["model"], r["strategy"]) for r in rows] == [("resnet18", "baseline"), ("grnn", "baseline")]
    for row in rows:  # the printed table carries each run's own eval EER
        run = out / "synthetic" / f"{row['model']}-baseline-s42"
        report = json.loads((run / "scores" / "synthetic-eval.json").read_text())
        assert row["eer"] == pytest.approx(100 * report["eer"]) and f"{row['eer']:.2f}" in text

    grnn = out / "synthetic" / "grnn-baseline-s42"
    code, text, err = run_cli(capsys, "export", grnn, "--out", tmp_path / "grnn.onnx")
    assert code == 0 and (tmp_path / "grnn.onnx").is_file(), err
    clips = sorted((tiny_corpus / "LA" / "ASVspoof2019_LA_eval" / "flac").glob("*.flac"))[:3]
    scored = {}
    for source in (["--run", grnn], ["--onnx", tmp_path / "grnn.onnx"]):
        code, text, err = run_cli(capsys, "score", *clips, *source, "--json")
        assert code == 0, err
        scored[source[0]] = [json.loads(line)["score"] for line in text.splitlines()]
    np.testing.assert_allclose(scored["--onnx"], scored["--run"], atol=1e-4)  # the export scores as the run does

    resnet = out / "synthetic" / "resnet18-baseline-s42"
    code, text, err = run_cli(capsys, "gradcam", resnet, clips[0], "--out", tmp_path / "cam.png")
    assert code == 0 and text.strip() == f"wrote {tmp_path / 'cam.png'}", err
    assert (tmp_path / "cam.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_demo_runs_every_cell_of_the_table_on_the_tiny_profile(capsys, tmp_path):
    code, text, err = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--profile", "tiny", *TINY)
    assert code == 0, err
    rows = json.loads((tmp_path / "demo" / "synthetic" / "table1.json").read_text())
    assert {(r["model"], r["strategy"]) for r in rows} == {
        (model, strategy) for model in ("resnet18", "grnn")
        for strategy in ("baseline", "dropin-unfrozen", "dropin-frozen", "plasticity")}
    for row in rows:  # every cell trained and evaluated: the table holds each run's own eval EER
        run = tmp_path / "demo" / "synthetic" / f"{row['model']}-{row['strategy']}-s42"
        report = json.loads((run / "scores" / "synthetic-eval.json").read_text())
        assert row["eer"] == pytest.approx(100 * report["eer"]) and row["strategy"] in text
    grown = {r["model"]: r for r in rows if r["strategy"] == "dropin-frozen"}
    base = {r["model"]: r for r in rows if r["strategy"] == "baseline"}
    assert all(grown[m]["params_m"] > base[m]["params_m"] for m in base)  # dropin really grew each model
