"""Back-end cost: parameters, FLOPs and MACs as torch's flop counter sees them, scaling, table, CLI verb."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from plastispoof.cli import app, main
from plastispoof.cost import backend_cost, count_flops, format_cost, parameter_counts
from plastispoof.errors import InputError
from plastispoof.models.nes2net import build_backend


def test_count_flops_is_two_per_multiply_accumulate():
    assert count_flops(nn.Linear(6, 3, bias=False), torch.zeros(4, 6)) == 2 * 4 * 6 * 3
    conv = nn.Conv1d(2, 5, kernel_size=3, padding=1)
    assert count_flops(conv, torch.zeros(1, 2, 10)) == 2 * 10 * 5 * 2 * 3


def test_parameter_counts_split_trainable():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    assert parameter_counts(model) == (15 + 8, 8)


@pytest.mark.parametrize("name", ["nes2net", "nes2net-x", "linear", "reduction-aasist"])
def test_backend_cost_is_what_the_flop_counter_counts_on_the_backend_alone(name):
    cost = backend_cost(name, input_dim=64, frames=30)
    backend = build_backend(name, input_dim=64).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        backend(torch.randn(1, 64, 30))
    assert cost["flops"] == counter.get_total_flops() and cost["macs"] * 2 == cost["flops"]
    assert cost["params"] == sum(p.numel() for p in backend.parameters())
    assert (cost["name"], cost["input_dim"], cost["frames"]) == (name, 64, 30)


def nes2net_macs(dim: int, frames: int, stacked: bool) -> int:
    """MACs of Nes2Net from its structure: per block two 1x1 convs and 7 k=3 convs on slices, which Nes2Net-X
    applies to 2, 3, ..., 8 slices; per utterance the squeeze-excitation layers and the classifier."""
    width, part = dim // 8, dim // 64
    slice_convs = sum(step + 2 for step in range(7)) if stacked else 7
    per_frame = 7 * (2 * width * width + slice_convs * part * part * 3)
    per_utterance = 7 * 2 * width * width + dim * 2
    return per_frame * frames + per_utterance


@pytest.mark.parametrize("name, stacked", [("nes2net", False), ("nes2net-x", True)])
def test_nes2net_macs_match_its_structure_and_grow_linearly_with_frames(name, stacked):
    costs = [backend_cost(name, input_dim=128, frames=frames)["macs"] for frames in (10, 20, 40)]
    assert costs == [nes2net_macs(128, frames, stacked) for frames in (10, 20, 40)]
    assert costs[2] - costs[1] == 2 * (costs[1] - costs[0])  # affine in the frame count


def test_full_size_nes2net_x_costs_far_less_than_reduction_aasist():
    # The paper reports an 87 % lower back-end cost than the SSL-AASIST back-end.
    nes2net_x = backend_cost("nes2net-x")
    assert nes2net_x["macs"] == nes2net_macs(1024, 200, stacked=True)
    assert nes2net_x["macs"] < 0.2 * backend_cost("reduction-aasist")["macs"]


def test_format_cost_lists_rows_and_compares_with_reduction_aasist():
    rows = [{"name": "nes2net", "input_dim": 1024, "frames": 200, "params": 511_794, "macs": 50_000_000,
             "flops": 100_000_000},
            {"name": "reduction-aasist", "input_dim": 1024, "frames": 200, "params": 430_282, "macs": 500_000_000,
             "flops": 1_000_000_000}]
    table = format_cost(rows).splitlines()
    assert table[0].startswith("| back-end") and "MACs vs reduction-aasist" in table[0]
    assert table[2].startswith("| nes2net | 1024 x 200 | 511,794 | 50.0 M | 100 M") and "10.0 %" in table[2]
    assert "100.0 %" in table[3]
    assert "vs" not in format_cost(rows[:1])


@pytest.mark.parametrize("name, frames", [("nes3net", 200), ("nes2net", 0), ("reduction-aasist", 2)])
def test_bad_cost_requests_are_input_errors(name, frames):
    with pytest.raises(InputError):
        backend_cost(name, frames=frames)


def test_cost_verb_prints_the_table_and_exits_2_on_unknown_names(monkeypatch, capsys):
    result = CliRunner().invoke(app, ["cost", "nes2net,linear", "--input-dim", "64", "--input-frames", "20"])
    assert result.exit_code == 0, result.output
    assert "| nes2net | 64 x 20 |" in result.output and "| linear | 64 x 20 |" in result.output
    monkeypatch.setattr(sys, "argv", ["plastispoof", "cost", "nes2net,bogus"])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "unknown back-end 'bogus'" in captured.err
