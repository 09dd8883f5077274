"""evaluate and calibrate under torchrun: 2 gloo processes shard the trials (no duplicates, no padding) and rank 0
writes the same score file as one process, byte for byte; more ranks than trials is one line and exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_run import grnn_config, write_tiny_corpus

from plastispoof.scale.sharding import shard_batches
from plastispoof.training import train

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


def plastispoof(*args: str, ranks: int = 0) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)] \
        if ranks else [sys.executable]
    return subprocess.run([*launcher, "-m", "plastispoof.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)


@pytest.fixture(scope="module")
def run_and_corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torchrun")
    # 37 eval trials in batches of 16: rank 0 scores batches 0 and 2 (21 trials), rank 1 batch 1 (16).
    corpus = write_tiny_corpus(tmp / "corpus", {"train": (8, 8), "dev": (9, 8), "eval": (17, 20)}, seconds=0.3)
    return train(grnn_config(tmp / "runs", corpus)), corpus


def test_shards_cover_every_trial_once():
    trials = list(range(37))
    shards = [shard_batches(trials, 16, rank, 2) for rank in range(2)]
    assert shards == [trials[:16] + trials[32:], trials[16:32]]
    assert sorted(shards[0] + shards[1]) == trials
    assert sorted(sum((shard_batches(trials, 5, r, 3) for r in range(3)), [])) == trials


def test_two_ranks_write_the_single_process_score_file_byte_for_byte(run_and_corpus, tmp_path):
    run, corpus = run_and_corpus
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    shutil.copytree(run, single)
    shutil.copytree(run, sharded)
    one = plastispoof("evaluate", str(single), "--dataset", "asv19-la", "--root", str(corpus))
    two = plastispoof("evaluate", str(sharded), "--dataset", "asv19-la", "--root", str(corpus), ranks=2)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    score_file = Path("scores") / "asv19-la-eval.txt"
    assert (sharded / score_file).read_bytes() == (single / score_file).read_bytes()
    assert len((single / score_file).read_text().splitlines()) == 37
    assert two.stdout.count("EER") == one.stdout.count("EER") > 0  # rank 0 alone reports
    records = [json.loads(line) for line in (sharded / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "evaluate" and records[-1]["ranks"] == 2 and records[-1]["trials"] == 37
    # Whole-file scoring (evaluate --full) and calibrate shard the same way.
    one = plastispoof("evaluate", str(single), "--dataset", "asv19-la", "--root", str(corpus), "--full")
    two = plastispoof("evaluate", str(sharded), "--dataset", "asv19-la", "--root", str(corpus), "--full", ranks=2)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    full = Path("scores") / "asv19-la-eval-window-mean.txt"
    assert (sharded / full).read_bytes() == (single / full).read_bytes()
    one = plastispoof("calibrate", str(single), "--dataset", "asv19-la", "--root", str(corpus))
    two = plastispoof("calibrate", str(sharded), "--dataset", "asv19-la", "--root", str(corpus), ranks=2)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    fitted = [json.loads((d / "calibration.json").read_text()) for d in (single, sharded)]
    assert [(f["slope"], f["offset"], f["n_bonafide"], f["n_spoof"]) for f in fitted][0] == \
        [(f["slope"], f["offset"], f["n_bonafide"], f["n_spoof"]) for f in fitted][1]
    assert two.stdout.count("calibration of") == 1


def test_more_ranks_than_trials_is_one_line_and_exit_2(run_and_corpus, tmp_path):
    run, corpus = run_and_corpus
    first = sorted((corpus / "LA" / "ASVspoof2019_LA_eval" / "flac").iterdir())[0]
    (tmp_path / "one.csv").write_text(f"path,label\n{first},spoof\n")
    result = plastispoof("evaluate", str(run), "--dataset", "csv", "--root", str(tmp_path / "one.csv"), ranks=2)
    message = ("error: torchrun started 2 ranks for 1 trials: every rank needs at least one trial; use "
               "--nproc_per_node 1 or fewer")
    # Each rank says it (their lines may interleave on the shared stderr), and nothing else of ours.
    assert 1 <= result.stderr.count(message) <= 2
    assert result.stderr.replace(message, "").count("error:") == 0
    assert "exitcode  : 2" in result.stderr or result.returncode == 2, result.stderr[-1500:]


def test_reproduce_under_two_ranks_scores_sharded_and_reports_once(run_and_corpus, tmp_path):
    """`reproduce table1` under torchrun: DDP training, then the eval trials sharded over the 2 ranks; rank 0 alone
    prints and writes the table, and the run's score file is the one a single-process `evaluate` writes."""
    _, corpus = run_and_corpus
    out = tmp_path / "t1"
    tiny = ["--epochs", "1", "--set", "train.max_steps_per_epoch=2", "data.num_samples=4800", "data.batch_size=4",
            "data.eval_batch_size=16", "data.max_dev=12", "model.args.hidden_sizes=[4]"]
    two = plastispoof("reproduce", "table1", "--dataset", "asv19-la", "--root", str(corpus), "--models", "grnn",
                      "--strategies", "baseline", "--seeds", "42", "--out", str(out), *tiny, ranks=2)
    assert two.returncode == 0, two.stderr[-3000:]
    run = out / "asv19-la" / "grnn-baseline-s42"
    evaluations = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                   if json.loads(line).get("event") == "evaluate"]
    assert [(e["ranks"], e["trials"]) for e in evaluations] == [(2, 37)]
    rows = json.loads((out / "asv19-la" / "table1.json").read_text())
    assert [(r["model"], r["strategy"]) for r in rows] == [("grnn", "baseline")]
    assert two.stdout.count("| grnn") == 1  # the table, printed by rank 0 only
    report = json.loads((run / "scores" / "asv19-la-eval.json").read_text())
    assert rows[0]["eer"] == pytest.approx(100 * report["eer"])
    single = tmp_path / "single"
    shutil.copytree(run, single)
    (single / "scores" / "asv19-la-eval.txt").unlink()
    one = plastispoof("evaluate", str(single), "--dataset", "asv19-la", "--root", str(corpus))
    assert one.returncode == 0, one.stderr[-2000:]
    score_file = Path("scores") / "asv19-la-eval.txt"
    assert (single / score_file).read_bytes() == (run / score_file).read_bytes()
