"""The trade-off reproduction: Pareto front, table files, and one tiny end-to-end run of the verb."""

from __future__ import annotations

import json
import random

import pytest

from plastispoof.analysis.tradeoff import TradeoffRow, pareto_front, reproduce_tradeoff, write_tradeoff
from plastispoof.errors import InputError

from tiny_run import write_tiny_corpus


def _dominated(point, other) -> bool:
    return other[0] <= point[0] and other[1] <= point[1] and other != point


def test_pareto_front_keeps_exactly_the_undominated_points():
    rng = random.Random(0)
    for _ in range(50):
        points = [(rng.randint(1, 9) / 3, rng.randint(1, 9)) for _ in range(rng.randint(1, 12))]
        front = pareto_front(points)
        assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)  # ordered by cost
        for index, point in enumerate(points):
            beaten = any(_dominated(point, other) for other in points)
            if index in front:
                assert not beaten
            else:  # left out: dominated, or a duplicate of a point on the front
                assert beaten or any(points[i] == point for i in front)


def _row(kappa, eer, gflops, params) -> TradeoffRow:
    return TradeoffRow("resnet34", "baseline" if kappa is None else "dynamic-width", kappa, eer, 4 * gflops, gflops,
                       gflops / 5.64, params, None if kappa is None else {"layer1.0": 3}, "runs/x")


def test_write_tradeoff_writes_every_format(tmp_path):
    rows = [_row(None, 6.26, 5.64, 5.4), _row(0.25, 3.48, 1.18, 0.8), _row(0.125, 2.53, 0.91, 0.5)]
    markdown = write_tradeoff(rows, tmp_path, title="test")
    assert markdown.splitlines()[2].startswith("| resnet34 | baseline | - | 6.26 |")
    assert (tmp_path / "tradeoff.md").read_text().strip() == markdown
    csv_lines = (tmp_path / "tradeoff.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(rows) and csv_lines[2].split(",")[2] == "0.25"
    stored = json.loads((tmp_path / "tradeoff.json").read_text())
    assert [r["kappa"] for r in stored] == [None, 0.25, 0.125] and stored[1]["widths"] == {"layer1.0": 3}
    assert (tmp_path / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kappas_must_be_fractions(tmp_path):
    with pytest.raises(InputError, match="kappas"):
        reproduce_tradeoff("synthetic", tmp_path, kappas=[0.5, 2.0], out=tmp_path)


@pytest.mark.slow
def test_reproduce_tradeoff_on_the_tiny_corpus(tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", seconds=0.3)
    overrides = ["model.args.width=2", "data.num_samples=4800", "data.batch_size=8", "data.eval_batch_size=16"]
    kappa = 0.95  # width 2: the front-end is 91 % of the FLOPs, so no lower kappa can be met (issue #16)
    markdown = reproduce_tradeoff("synthetic", corpus, model="resnet34", kappas=[kappa], out=tmp_path / "runs",
                                  epochs=1, overrides=overrides)
    out = tmp_path / "runs" / "synthetic"
    rows = json.loads((out / "tradeoff.json").read_text())
    assert [(r["strategy"], r["kappa"]) for r in rows] == [("baseline", None), ("dynamic-width", kappa)]
    baseline, dynamic = rows
    assert baseline["flops_vs_baseline"] == 1.0 and dynamic["flops_vs_baseline"] <= kappa + 0.02
    assert dynamic["params_m"] <= baseline["params_m"] and len(dynamic["widths"]) == 16  # every block's site
    assert all(0 <= r["eer"] <= 100 for r in rows)
    assert (out / "tradeoff.png").stat().st_size > 0 and markdown in (out / "tradeoff.md").read_text()
    # Finished runs are reused, not trained again.
    weights = [out / name / "model.safetensors" for name in ("resnet34-baseline-s42", "resnet34-dynamic-width-k0.95-s42")]
    stamps = [path.stat().st_mtime_ns for path in weights]
    assert reproduce_tradeoff("synthetic", corpus, model="resnet34", kappas=[kappa], out=tmp_path / "runs",
                              epochs=1, overrides=overrides) == markdown
    assert [path.stat().st_mtime_ns for path in weights] == stamps


def _no_training(*args, **kwargs):
    raise AssertionError("a run was trained or measured before every kappa was checked")


def test_a_kappa_below_the_floor_is_refused_before_anything_trains(tmp_path, monkeypatch):
    from plastispoof.capacity.dynamic_width.transforms import DynamicWidthSettings, MakeWidthsDynamic
    from plastispoof.models.base import build_model

    monkeypatch.setattr("plastispoof.analysis.tradeoff.measure_run", _no_training)
    out = tmp_path / "runs"
    # Width 2: the front-end is 91 % of the FLOPs, so 0.95 is allowed and 0.5 and 0.25 are not.
    with pytest.raises(InputError) as refused:
        reproduce_tradeoff("synthetic", tmp_path / "corpus", model="resnet34", kappas=[0.95, 0.5, 0.25], out=out,
                           epochs=1, overrides=["model.args.width=2"])
    message = str(refused.value)
    assert message.startswith("kappas 0.5, 0.25 are below resnet34's floor 0.911 (")
    assert message.endswith("; kappas >= 0.911 are allowed, e.g. --kappas 0.95")
    assert not out.exists()  # no run directory, so a retry with allowed kappas starts clean
    # The floor named is the one the dynamic-width transform itself refuses below.
    with pytest.raises(InputError, match=r"^kappa 0.5 is below this model's floor 0\.911 "):
        MakeWidthsDynamic(DynamicWidthSettings(kappa=0.5)).apply(build_model("resnet34", width=2))


def test_the_cli_default_kappas_on_grnn_are_refused_in_one_line_naming_those_allowed(tmp_path):
    import subprocess
    import sys

    # The default --kappas 0.5,0.25,0.125 suits ResNet34 (floor 0.113); GRNN's floor is 0.163.
    done = subprocess.run([sys.executable, "-m", "plastispoof.cli", "reproduce", "tradeoff", "--dataset", "synthetic",
                           "--root", str(tmp_path / "corpus"), "--model", "grnn", "--out", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: kappa 0.125 is below grnn's floor 0.163 (")
    assert lines[0].endswith("; kappas >= 0.163 are allowed, e.g. --kappas 0.5,0.25")
    assert not (tmp_path / "runs").exists()


def test_the_default_kappas_are_above_the_floor_of_the_recipes_resnet34(tmp_path, monkeypatch):
    class Checked(Exception):
        pass

    def stop(*args, **kwargs):
        raise Checked

    monkeypatch.setattr("plastispoof.analysis.tradeoff.measure_run", stop)
    # Issue #16 asks for 0.5, 0.25 and 0.125 on ResNet34 (floor 0.113 at the recipe's width 32): all pass the check.
    with pytest.raises(Checked):
        reproduce_tradeoff("synthetic", tmp_path / "corpus", model="resnet34", out=tmp_path / "runs")
