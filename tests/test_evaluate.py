"""Evaluating a run: score file, metrics JSON, DET + histogram PNGs, metrics.jsonl line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tiny_run import grnn_config, tiny_config

from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.evaluate import evaluate_run, format_metrics
from plastispoof.runs import load_run_model, read_jsonl
from plastispoof.score_files import score_protocol
from plastispoof.scoring import score_trials
from plastispoof.training import train

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus):
    return train(tiny_config(tmp_path_factory.mktemp("runs"), corpus))


def test_evaluate_writes_scores_metrics_and_plots(run_dir, corpus):
    report = evaluate_run(run_dir, "asv19-la", corpus, "eval")
    trials = read_dataset("asv19-la", corpus, "eval")

    lines = (run_dir / "scores" / "asv19-la-eval.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == [t.utt_id for t in trials]
    written = {utt: float(score) for utt, score in (line.split() for line in lines)}
    model, _ = load_run_model(run_dir)
    expected = score_trials(model, trials, 1600, 16, "cpu")
    assert written == pytest.approx(expected, rel=1e-6, abs=1e-7)

    saved = json.loads((run_dir / "scores" / "asv19-la-eval.json").read_text())
    assert saved == {k: v for k, v in report.items() if k != "files"}
    assert (report["n_bonafide"], report["n_spoof"]) == (6, 10)
    assert set(report["per_attack"]) == {"A01", "A02"}
    protocol = corpus / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt"
    assert score_protocol(run_dir / "scores" / "asv19-la-eval.txt", protocol)["eer"] == report["eer"]

    for name in ("det-asv19-la-eval.png", "hist-asv19-la-eval.png"):
        assert (run_dir / "plots" / name).read_bytes()[:8] == PNG
    last = read_jsonl(run_dir / "metrics.jsonl")[-1]
    assert last["event"] == "evaluate" and last["eer"] == report["eer"] and last["trials"] == 16
    text = format_metrics(report)
    assert "EER" in text and str(run_dir / "scores" / "asv19-la-eval.txt") in text


def test_evaluate_needs_a_finished_run(tmp_path, corpus):
    with pytest.raises(InputError, match="not a run directory"):
        evaluate_run(tmp_path, "asv19-la", corpus)


def test_evaluate_on_a_missing_corpus_fails_clearly(run_dir, tmp_path):
    with pytest.raises(InputError, match="not found"):
        evaluate_run(run_dir, "asv19-la", tmp_path / "nowhere")


@pytest.mark.slow
def test_cli_evaluate_end_to_end(tmp_path, corpus):
    run = train(grnn_config(tmp_path, corpus))
    done = subprocess.run([sys.executable, "-m", "plastispoof.cli", "evaluate", str(run), "--dataset", "asv19-la",
                           "--root", str(corpus), "--subset", "dev"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "EER" in done.stdout and "per attack" in done.stdout
    report = json.loads((run / "scores" / "asv19-la-dev.json").read_text())
    assert report["n_bonafide"] + report["n_spoof"] == 16
    assert (run / "plots" / "det-asv19-la-dev.png").read_bytes()[:8] == PNG
