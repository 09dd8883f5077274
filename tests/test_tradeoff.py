"""The trade-off reproduction: Pareto front, table files, and one tiny end-to-end run of the verb."""

from __future__ import annotations

import json
import random

import pytest
from tiny_run import write_tiny_corpus

from plastispoof.analysis.tradeoff import (
    CONTROL,
    TradeoffRow,
    aggregate,
    equal_flops_width,
    pareto_front,
    reproduce_tradeoff,
    write_tradeoff,
)
from plastispoof.errors import InputError


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


RESNET_GROUPS = {f"layer{stack}.{block}": f"layer{stack}" for stack, blocks in enumerate((3, 4, 6, 3), start=1)
                 for block in range(blocks)}


def _seed_row(strategy, kappa, seed, eer, ratio, params, widths=None, width=None) -> TradeoffRow:
    return TradeoffRow("resnet34", strategy, kappa, eer, 4 * ratio, ratio, ratio, params, widths, f"runs/{seed}",
                       seeds=[seed], width=width, groups=RESNET_GROUPS if widths else {})


def _full_widths(width):
    return {name: width * 2 ** (int(name[5]) - 1) for name in RESNET_GROUPS}


def test_several_seeds_give_mean_and_sample_std_rows_with_every_seed_kept(tmp_path):
    import statistics

    eers, ratios, params = [20.0, 23.0, 29.0], [0.248, 0.25, 0.246], [0.9, 1.1, 1.3]
    learnt = [{**_full_widths(32), "layer1.0": 2 + seed} for seed in range(3)]
    rows = [aggregate([_seed_row("baseline", None, 42 + i, 18.0 + i, 1.0, 5.325, _full_widths(32), 32)
                       for i in range(3)]),
            aggregate([_seed_row("dynamic-width", 0.25, 42 + i, eers[i], ratios[i], params[i], learnt[i])
                       for i in range(3)])]
    dynamic = rows[1]
    assert dynamic.seeds == [42, 43, 44] and dynamic.eer == pytest.approx(statistics.fmean(eers))
    assert dynamic.eer_std == pytest.approx(statistics.stdev(eers))  # sample std, as Table I's
    assert dynamic.flops_vs_baseline_std == pytest.approx(statistics.stdev(ratios))
    assert dynamic.params_m_std == pytest.approx(statistics.stdev(params))
    markdown = write_tradeoff(rows, tmp_path)
    line = markdown.splitlines()[3].split(" | ")
    assert line[3] == f"{statistics.fmean(eers):.2f} ± {statistics.stdev(eers):.2f}"  # 24.00 ± 4.58
    assert line[6] == "0.248 ± 0.002" and line[7].rstrip(" |") == "1.100 ± 0.200"
    assert "Mean ± sample std over seeds 42, 43, 44." in markdown
    stored = json.loads((tmp_path / "tradeoff.json").read_text())
    assert [r["widths"] for r in stored[1]["per_seed"]] == learnt  # every seed's final widths, not only the mean
    # The per-stack table: one line per run and seed, kept/full channels of each block.
    widths_lines = [line for line in markdown.splitlines() if line.startswith("| dynamic-width (κ=0.25) |")]
    assert [line.split(" | ")[1] for line in widths_lines] == ["42", "43", "44"]
    assert widths_lines[1].split(" | ")[2:4] == ["3/32/32", "64/64/64/64"]


def test_a_single_seed_keeps_plain_cells(tmp_path):
    rows = [_seed_row("baseline", None, 42, 18.0, 1.0, 5.325, _full_widths(32), 32)]
    assert aggregate(rows) is rows[0]
    markdown = write_tradeoff(rows, tmp_path)
    assert markdown.splitlines()[2] == "| resnet34 | baseline | - | 18.00 | 4 | 1 | 1.000 | 5.325 |"
    assert "±" not in markdown and "seeds" not in markdown


def test_per_stack_widths_are_grouped_by_stack_with_the_baselines_widths_as_full():
    from plastispoof.analysis.tradeoff import format_stack_widths

    learnt = {name: 1 + index for index, name in enumerate(RESNET_GROUPS)}  # 1 .. 16, in model order
    rows = [_seed_row("baseline", None, 42, 18.0, 1.0, 5.3, _full_widths(32), 32),
            _seed_row("dynamic-width", 0.125, 42, 30.0, 0.125, 0.4, learnt),
            _seed_row(CONTROL, 0.125, 42, 28.0, 0.126, 0.5, _full_widths(10), 10)]
    lines = format_stack_widths(rows).splitlines()
    assert lines[0] == ("| Run | Seed | layer1 (of 32) | layer2 (of 64) | layer3 (of 128) | layer4 (of 256) | "
                        "Σ kept / Σ full |")
    assert lines[2] == "| baseline | 42 | 32/32/32 | 64/64/64/64 | 128/128/128/128/128/128 | 256/256/256 | 1888/1888 |"
    assert lines[3] == "| dynamic-width (κ=0.125) | 42 | 1/2/3 | 4/5/6/7 | 8/9/10/11/12/13 | 14/15/16 | 136/1888 |"
    assert lines[4] == "| control (κ=0.125) | 42 | 10/10/10 | 20/20/20/20 | 40/40/40/40/40/40 | 80/80/80 | 590/1888 |"


def test_the_control_width_is_the_uniform_width_with_the_nearest_flops():
    from plastispoof.analysis.tradeoff import _flops_example
    from plastispoof.models.base import build_model
    from plastispoof.models.flops import count_flops

    example = _flops_example(16000)
    flops = {width: float(count_flops(build_model("resnet34", width=width), example)) for width in range(1, 9)}
    # At width 8 the log-mel front-end is a third of the FLOPs: width 1 keeps 0.31, width 4 0.49, width 5 0.58.
    for target in (0.5 * flops[8], 0.25 * flops[8], flops[5], 0.7 * flops[8]):
        width, found = equal_flops_width("resnet34", {"width": 8}, target, 16000)
        assert found == flops[width]
        assert abs(found - target) == min(abs(f - target) for f in flops.values())  # none nearer, by brute force
    # The tolerance that follows: half the FLOPs step between the two widths around the target.
    width, found = equal_flops_width("resnet34", {"width": 8}, 0.5 * flops[8], 16000)
    assert width == 4 and abs(found - 0.5 * flops[8]) <= (flops[5] - flops[4]) / 2


def test_kappas_must_be_fractions(tmp_path):
    with pytest.raises(InputError, match="kappas"):
        reproduce_tradeoff("synthetic", tmp_path, kappas=[0.5, 2.0], out=tmp_path)


@pytest.mark.slow
def test_reproduce_tradeoff_on_the_tiny_corpus(tmp_path):
    from plastispoof.analysis.tradeoff import _flops_example
    from plastispoof.models.base import build_model
    from plastispoof.models.flops import count_flops

    corpus = write_tiny_corpus(tmp_path / "corpus", seconds=0.3)
    overrides = ["model.args.width=2", "data.num_samples=4800", "data.batch_size=8", "data.eval_batch_size=16"]
    kappa = 0.95  # width 2: the front-end is 91 % of the FLOPs, so no lower kappa can be met (issue #16)
    markdown = reproduce_tradeoff("synthetic", corpus, model="resnet34", kappas=[kappa], out=tmp_path / "runs",
                                  epochs=1, overrides=overrides, seeds=[42, 43])
    out = tmp_path / "runs" / "synthetic"
    rows = json.loads((out / "tradeoff.json").read_text())
    assert [(r["strategy"], r["kappa"]) for r in rows] == [("baseline", None), ("dynamic-width", kappa),
                                                           ("control", kappa)]
    baseline, dynamic, control = rows
    assert all(r["seeds"] == [42, 43] and len(r["per_seed"]) == 2 for r in rows)
    for seed_row in dynamic["per_seed"]:
        assert seed_row["flops_vs_baseline"] <= kappa + 0.02
        assert seed_row["params_m"] <= baseline["params_m"] and len(seed_row["widths"]) == 16  # every block's site
    assert baseline["flops_vs_baseline"] == 1.0 and baseline["flops_vs_baseline_std"] == 0.0
    assert all(0 <= r["eer"] <= 100 for r in rows) and "Mean ± sample std over seeds 42, 43." in markdown
    # The control: the plain model at the uniform width (1 or 2) whose FLOPs are nearest the kappa run's, trained
    # as many epochs (one), so within half the FLOPs step between widths 1 and 2 of it.
    example = _flops_example(16000)
    flops = {width: float(count_flops(build_model("resnet34", width=width), example)) for width in (1, 2)}
    for dynamic_seed, control_seed in zip(dynamic["per_seed"], control["per_seed"]):
        target = dynamic_seed["gflops_4s"] * 1e9
        assert control_seed["width"] == min(flops, key=lambda width: abs(flops[width] - target))
        assert abs(control_seed["gflops_4s"] * 1e9 - target) <= (flops[2] - flops[1]) / 2
        assert set(control_seed["widths"].values()) <= {control_seed["width"] * 2 ** k for k in range(4)}
        meta = json.loads((out / f"resnet34-control-k0.95-w{control_seed['width']}-s{control_seed['seeds'][0]}"
                           / "meta.json").read_text())
        assert sum(stage["epochs"] for stage in meta["stages"]) == 1
    assert "| control (κ=0.95), width " in markdown and "| dynamic-width (κ=0.95) | 43 |" in markdown
    assert (out / "tradeoff.png").stat().st_size > 0 and markdown in (out / "tradeoff.md").read_text()
    # Finished runs are reused, not trained again.
    names = ("resnet34-baseline-s42", "resnet34-dynamic-width-k0.95-s43")
    weights = [out / name / "model.safetensors" for name in names]
    stamps = [path.stat().st_mtime_ns for path in weights]
    assert reproduce_tradeoff("synthetic", corpus, model="resnet34", kappas=[kappa], out=tmp_path / "runs",
                              epochs=1, overrides=overrides, seeds=[42, 43]) == markdown
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
