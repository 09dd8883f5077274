"""The kill soak, 3 kills: a tiny run SIGKILLed at random moments and resumed ends with the weights hash and
metrics of an uninterrupted run, and no kill leaves an unreadable run directory (benchmarks/kill_soak.py runs
the 20-kill version)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from kill_soak import kill_soak, run_summary  # noqa: E402


@pytest.mark.slow
def test_three_kills_and_resumes_end_as_the_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    report = kill_soak(tmp_path, kills=3, epochs=2, seed=1)
    assert report["kills"] == 3
    assert report["runs_compared"] >= 1 and report["runs_equal"] == report["runs_compared"], report
    assert report["unreadable_files"] == []
    # The comparison is not vacuous: the reference trained (several epochs logged, a real weights hash).
    reference = run_summary(tmp_path / "runs" / "reference")
    assert len(reference["metrics"]) >= 2 and reference["dev"]["finished"] is True
    assert not list((tmp_path / "runs").rglob(".*.tmp*"))  # resume cleared what the kills interrupted
