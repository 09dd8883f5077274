"""Dynamic widths: the noisy gate's gradient, the FLOPs penalty, physical shrinking, the FLOPs model, replay."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from tiny_run import tiny_config, write_tiny_corpus
from torch import nn

from plastispoof.capacity import apply_transforms, build_strategy
from plastispoof.capacity.dynamic_width import (
    BUDGET_NAME,
    DynamicWidth,
    DynamicWidthSettings,
    MakeWidthsDynamic,
    Shrink,
    dynamic_sites,
    dynamic_widths,
)
from plastispoof.errors import InputError
from plastispoof.models.base import build_model, count_parameters
from plastispoof.models.flops import count_flops
from plastispoof.runs import load_run_model, load_state_strict, read_meta

TINY = {"resnet18": {"width": 4}, "resnet34": {"width": 2}, "grnn": {"hidden_sizes": [6, 5, 4]}}
SAMPLES = 4800  # 0.3 s: GRNN's deltas need 9 frames of hop 512
# The tiny models' front-ends cost most of their FLOPs, so a kappa that a full-size model meets is below their floor.
NO_TARGET = 1.0  # kappa for tests not about the target: no shrink projects widths, no model is below its floor
TINY_GRNN_KAPPA = 0.93  # above the tiny GRNN's floor (0.92), below its full cost: the penalty pulls


def waveforms(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, SAMPLES, generator=torch.Generator().manual_seed(seed))


def dynamic(name: str, seed: int = 0, **settings) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, **TINY.get(name, {}))
    settings.setdefault("kappa", NO_TARGET)
    MakeWidthsDynamic(DynamicWidthSettings(seconds=SAMPLES / 16000, **settings)).apply(model)
    return model


def set_fraction(model: nn.Module, fraction: float) -> None:
    for _, gate in dynamic_sites(model):
        gate.set_width(fraction * gate.full_width)


def task_loss(model: nn.Module, seed: int = 0) -> torch.Tensor:
    return F.cross_entropy(model(waveforms(seed=seed)), torch.tensor([0, 1]))


# ------------------------------------------------------------------------------------------ the gate


def test_gate_passes_kept_channels_zeroes_the_rest_and_mixes_the_boundary():
    layer = nn.Linear(5, 6)
    gate = DynamicWidth(layer, min_width=1)
    gate.set_width(3.5)  # boundary channel 3, f = 0.5
    x = torch.randn(4000, 5, generator=torch.Generator().manual_seed(0))
    plain = layer(x).detach()
    gate.train()
    noisy = gate(x).detach()
    gate.eval()
    clean = gate(x).detach()
    torch.testing.assert_close(noisy[:, :3], plain[:, :3])
    assert noisy[:, 4:].abs().max() == 0 and clean[:, 4:].abs().max() == 0
    torch.testing.assert_close(clean[:, 3], plain[:, 3] * torch.sin(torch.tensor(0.5 * torch.pi / 2)))
    assert not torch.allclose(noisy[:, 3], clean[:, 3])  # training adds noise to the boundary channel
    # The noise mix keeps the channel's variance (up to sampling error and the mean's share).
    assert noisy[:, 3].var().item() == pytest.approx(plain[:, 3].var().item(), rel=0.1)


def test_gate_without_noise_is_deterministic_in_training():
    gate = DynamicWidth(nn.Linear(5, 6), min_width=1, noise=False)
    gate.set_width(2.3)
    x = torch.randn(8, 5)
    torch.testing.assert_close(gate.train()(x), gate.train()(x))
    torch.testing.assert_close(gate.train()(x), gate.eval()(x))


def test_width_is_projected_into_its_range():
    gate = DynamicWidth(nn.Linear(5, 8), min_width=2)
    gate.set_width(50.0)
    gate(torch.randn(2, 5))
    assert gate.width().item() == pytest.approx(8.0)
    gate.set_width(-3.0)
    gate(torch.randn(2, 5))
    assert gate.width().item() == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["resnet18", "grnn"])
@pytest.mark.parametrize("fraction", [1.0, 0.6])
def test_task_loss_alone_reaches_every_width(name, fraction):
    model = dynamic(name)
    set_fraction(model, fraction)
    model.train()
    task_loss(model).backward()  # no FLOPs penalty
    for site, gate in dynamic_sites(model):
        grad = gate.scaled_width.grad
        assert grad is not None and torch.isfinite(grad) and grad.abs() > 0, site.name


def test_task_loss_alone_widens_a_starved_layer():
    """Noise at the boundary hurts the fit, so the task alone pushes K up (a toy regression)."""
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    target = x @ torch.randn(4, 1)
    gate = DynamicWidth(nn.Linear(4, 16), min_width=1, speed=16.0)
    gate.set_width(3.5)
    head = nn.Linear(16, 1)
    optimizer = torch.optim.Adam([*gate.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        F.mse_loss(head(torch.relu(gate(x))), target).backward()
        optimizer.step()
    assert gate.width().item() > 5.0


def test_widths_fall_under_the_flops_penalty():
    # Without noise the task's pull on K is deterministic, so the two runs differ by the penalty alone.
    def train_a_few_steps(flops_weight: float) -> tuple[float, dict[str, float]]:
        model = dynamic("grnn", kappa=TINY_GRNN_KAPPA, flops_weight=flops_weight, noise=False)
        budget = getattr(model, BUDGET_NAME)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for step in range(3):
            optimizer.zero_grad()
            (task_loss(model, seed=step) + budget.auxiliary_loss()).backward()
            optimizer.step()
        model(waveforms())  # the next forward projects the widths into range
        return budget.ratio().item(), dynamic_widths(model)

    penalised_ratio, penalised = train_a_few_steps(10.0)
    free_ratio, free = train_a_few_steps(0.0)
    assert penalised_ratio < 1.0 and penalised_ratio < free_ratio
    assert sum(penalised.values()) < sum(free.values())


def test_penalty_is_the_excess_over_the_target():
    model = dynamic("resnet18", flops_weight=3.0)
    budget = getattr(model, BUDGET_NAME)
    set_fraction(model, 0.25)
    small = budget.ratio().item()
    budget.kappa = small + 0.01
    assert budget.auxiliary_loss().item() == 0
    set_fraction(model, 1.0)
    assert budget.ratio().item() == pytest.approx(1.0)
    assert budget.auxiliary_loss().item() == pytest.approx(3.0 * (1.0 - budget.kappa))


# ------------------------------------------------------------------------------------------ shrinking


@pytest.mark.parametrize("name", ["resnet18", "grnn"])
def test_shrinking_removes_zero_channels_without_changing_outputs(name):
    model = dynamic(name)
    gates = dynamic_sites(model)
    for index, (_, gate) in enumerate(gates):  # a different cut per site, boundary fractions in (0, 1)
        gate.set_width(max(1.3, gate.full_width * (0.35 + 0.1 * index % 0.6)))
    model.eval()
    x = waveforms()
    with torch.no_grad():
        before = model(x)
    params = count_parameters(model)
    Shrink().apply(model)
    with torch.no_grad():
        after_cut = model(x)
    assert count_parameters(model) < params
    assert all(gate.channels < gate.full_width for _, gate in dynamic_sites(model))
    Shrink(final=True).apply(model)
    with torch.no_grad():
        plain = model(x)
    assert not dynamic_sites(model) and not hasattr(model, BUDGET_NAME)
    assert not any(isinstance(m, DynamicWidth) for m in model.modules())
    torch.testing.assert_close(after_cut, before, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(plain, before, atol=1e-5, rtol=1e-4)


def test_shrink_needs_dynamic_widths():
    with pytest.raises(InputError, match="no dynamic widths"):
        Shrink().apply(build_model("grnn", **TINY["grnn"]))


# ------------------------------------------------------------------------------------------ FLOPs model


@pytest.mark.parametrize("name,args", [("resnet18", {"width": 16}), ("grnn", {})])
def test_flops_model_matches_flop_counter_on_the_shrunk_model(name, args):
    torch.manual_seed(0)
    model = build_model(name, **args)
    full_flops = count_flops(build_model(name, **args).eval(), torch.randn(1, SAMPLES))
    MakeWidthsDynamic(DynamicWidthSettings(seconds=SAMPLES / 16000, kappa=NO_TARGET)).apply(model)
    budget = getattr(model, BUDGET_NAME)
    assert budget.flops().item() == pytest.approx(full_flops, rel=1e-6)
    generator = torch.Generator().manual_seed(1)
    for _, gate in dynamic_sites(model):
        gate.set_width(gate.full_width * (0.3 + 0.6 * torch.rand((), generator=generator).item()))
    predicted = budget.flops().item()
    shrink = Shrink(final=True)
    shrink.apply(model)
    measured = count_flops(model.eval(), torch.randn(1, SAMPLES))
    assert measured < 0.9 * full_flops  # the check below is about a really smaller model
    assert predicted == pytest.approx(measured, rel=0.03)  # continuous K vs the ceil(K) channels kept
    at_kept_widths = budget.flops_model(shrink.widths)
    assert at_kept_widths == pytest.approx(measured, rel=1e-6)


def test_flops_are_measured_on_seconds_at_the_models_own_sample_rate():
    from plastispoof.models.resnet import ResNet

    class NarrowbandResNet(ResNet):  # a model that reads 8 kHz audio (its front-end is built for 8 kHz)
        sample_rate = 8000

    seconds = 0.6
    model = NarrowbandResNet(layers=(1, 1, 1, 1), width=4)
    at_8k = count_flops(NarrowbandResNet(layers=(1, 1, 1, 1), width=4).eval(), torch.randn(1, int(seconds * 8000)))
    at_16k = count_flops(NarrowbandResNet(layers=(1, 1, 1, 1), width=4).eval(), torch.randn(1, int(seconds * 16000)))
    assert at_16k > 1.5 * at_8k  # so measuring at the wrong rate would show
    MakeWidthsDynamic(DynamicWidthSettings(seconds=seconds, kappa=NO_TARGET)).apply(model)
    assert getattr(model, BUDGET_NAME).flops_model.full == pytest.approx(at_8k, rel=1e-9)


def test_dynamic_widths_need_a_model_that_states_its_sample_rate():
    model = build_model("resnet18", **TINY["resnet18"])
    model.sample_rate = None
    with pytest.raises(InputError, match="sample_rate"):
        MakeWidthsDynamic(DynamicWidthSettings(seconds=0.3)).apply(model)


# ------------------------------------------------------------------------------------------ replay, options


@pytest.mark.parametrize("name", ["resnet34", "grnn"])
def test_replaying_the_records_rebuilds_the_shrunk_plain_model(name):
    torch.manual_seed(0)
    model = build_model(name, **TINY[name])
    make_dynamic = MakeWidthsDynamic(DynamicWidthSettings(seconds=SAMPLES / 16000, kappa=NO_TARGET))
    make_dynamic.apply(model)
    set_fraction(model, 0.7)
    first = Shrink()
    first.apply(model)
    set_fraction(model, 0.45)
    last = Shrink(final=True)
    last.apply(model)
    records = [json.loads(json.dumps(t.record())) for t in (make_dynamic, first, last)]  # as in meta.json
    torch.manual_seed(123)
    rebuilt = apply_transforms(build_model(name, **TINY[name]), records)
    load_state_strict(rebuilt, model.state_dict(), "trained model")
    x = waveforms()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))
    assert type(rebuilt) is type(model) and count_parameters(rebuilt) == count_parameters(model)


def test_options_errors_are_input_errors():
    with pytest.raises(InputError, match="kappa"):
        build_strategy("dynamic-width", {"kappa": 1.5})
    with pytest.raises(InputError, match="flop_weight"):
        build_strategy("dynamic-width", {"flop_weight": 1.0})
    model = build_model("grnn", **TINY["grnn"])
    with pytest.raises(InputError, match="groups"):
        MakeWidthsDynamic(groups=["layer9"]).apply(model)
    with pytest.raises(InputError, match="growth site"):
        MakeWidthsDynamic(sites=["gru7"]).apply(model)
    MakeWidthsDynamic(DynamicWidthSettings(seconds=SAMPLES / 16000, kappa=NO_TARGET)).apply(model)
    with pytest.raises(InputError, match="already dynamic"):
        MakeWidthsDynamic().apply(model)


def test_groups_choose_the_stacks():
    torch.manual_seed(0)
    model = build_model("resnet18", **TINY["resnet18"])
    MakeWidthsDynamic(DynamicWidthSettings(seconds=SAMPLES / 16000, kappa=NO_TARGET),
                      groups=["layer3", "layer4"]).apply(model)
    assert [site.name for site, _ in dynamic_sites(model)] == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]


# ------------------------------------------------------------------------------------------ with the trainer


def test_strategy_trains_shrinks_and_leaves_a_plain_rebuildable_run(tmp_path):
    from plastispoof.training import train

    corpus = write_tiny_corpus(tmp_path / "corpus", seconds=SAMPLES / 16000)
    strategy = {"name": "dynamic-width", "args": {"kappa": 0.95, "flops_weight": 2.0, "width_speed": 64.0,
                                                  "seconds": SAMPLES / 16000, "finetune_epochs": 1}}
    cfg = tiny_config(tmp_path / "runs", corpus, name="dw", model={"name": "grnn", "args": {"hidden_sizes": [8, 6]}},
                      strategy=strategy, data={"num_samples": SAMPLES}, train={"epochs": 2, "lr": 0.01})
    run_dir = train(cfg)
    meta = read_meta(run_dir)
    kinds = [record["kind"] for record in meta["transforms"]]
    assert kinds[0] == "dynamic-width" and kinds[-1] == "shrink" and meta["transforms"][-1]["final"]
    assert kinds.count("shrink") >= 2  # shrunk during training, then the final cut
    assert [stage["name"] for stage in meta["stages"]] == ["dynamic", "shrink"]
    model, _ = load_run_model(run_dir)
    assert not any(isinstance(m, DynamicWidth) for m in model.modules())
    widths = meta["transforms"][-1]["widths"]
    assert [gru.hidden_size for gru in model.grus] == [widths["gru0"], widths["gru1"]]
    assert count_parameters(model) < count_parameters(build_model("grnn", hidden_sizes=[8, 6]))
    assert meta["stages"][-1]["params"] == count_parameters(model)


# ------------------------------------------------------------------------------------------ the trainer


def test_the_trainer_gives_widths_no_weight_decay_and_no_clipping(tmp_path):
    """One real trainer step (SGD, weight decay 0.5, clipping at 1e-3): each width moves by exactly -lr x its own
    gradient, while the weights' update is the clipped gradient plus their decay."""
    import copy

    from tiny_run import tiny_config

    from plastispoof.training.losses import auxiliary_loss, classification_loss
    from plastispoof.training.optim import Optimisation

    lr, decay, clip = 0.1, 0.5, 1e-3
    cfg = tiny_config(tmp_path, tmp_path, train={"optimizer": "sgd", "lr": lr, "weight_decay": decay,
                                                 "grad_clip": clip})
    # no noise: the reference backward below sees the same loss
    model = dynamic("grnn", noise=False, kappa=TINY_GRNN_KAPPA)
    optimisation = Optimisation(cfg.train, torch.device("cpu"))  # the trainer's optimiser and step
    optimisation.build(model, cfg.data.num_samples, "stage 'dynamic'")
    x, target = waveforms(), torch.tensor([0, 1])

    reference = copy.deepcopy(model).train()
    loss = classification_loss(cfg.train.loss, reference(x), target, None) + auxiliary_loss(reference)
    loss.backward()
    gradients = {name: p.grad.clone() for name, p in reference.named_parameters() if p.grad is not None}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimisation.step(x, target, None)

    widths = [name for name in before if name.endswith("scaled_width")]
    weights = [name for name in gradients if name not in widths]
    assert len(widths) == 3 and weights
    for name in widths:
        assert gradients[name].abs() > 0, name
        moved = dict(model.named_parameters())[name].detach() - before[name]
        torch.testing.assert_close(moved, -lr * gradients[name], rtol=1e-5, atol=1e-9)
    # weights: update = -lr (clipped gradient + decay * weight); the clipped gradients have norm `clip`
    after = dict(model.named_parameters())
    clipped = [(before[n] - after[n].detach()) / lr - decay * before[n] for n in weights]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in clipped]))
    raw = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(gradients[n]) for n in weights]))
    assert raw > 10 * clip and norm.item() == pytest.approx(clip, rel=1e-3)


# ------------------------------------------------------------------------------------------ meeting kappa (#16)

# Models whose floors are well below the kappas asked for (0.16 and 0.21 at 0.3 s), at default dynamic-width settings.
AT_SCALE = {"grnn": {}, "resnet18": {"width": 16}}


def flops_ratio(model: nn.Module, name: str) -> float:
    """Measured forward FLOPs of ``model`` as a fraction of the freshly built full model's."""
    x = torch.randn(1, SAMPLES)
    return count_flops(model.eval(), x) / count_flops(build_model(name, **AT_SCALE[name]).eval(), x)


@pytest.mark.parametrize("name", ["grnn", "resnet18"])
@pytest.mark.parametrize("kappa", [0.5, 0.25])
def test_the_final_shrink_projects_widths_that_missed_kappa_onto_it(name, kappa):
    torch.manual_seed(0)
    model = build_model(name, **AT_SCALE[name])
    MakeWidthsDynamic(DynamicWidthSettings(kappa=kappa, seconds=SAMPLES / 16000)).apply(model)
    generator = torch.Generator().manual_seed(1)
    for _, gate in dynamic_sites(model):  # where too few steps leave the widths (0.84 of the FLOPs in issue #16)
        gate.set_width(gate.full_width * (0.8 + 0.2 * torch.rand((), generator=generator).item()))
    learnt = {site.name: gate.kept() for site, gate in dynamic_sites(model)}
    minimums = {site.name: gate.min_width for site, gate in dynamic_sites(model)}
    assert getattr(model, BUDGET_NAME).kept_ratio() > kappa + 0.2
    shrink = Shrink(final=True)
    shrink.apply(model)
    record = shrink.record()
    measured = flops_ratio(model, name)
    assert measured <= kappa + 1e-6  # the FLOPs model is exact at integer widths: the cap is met, not approached
    assert measured > kappa - 0.06  # the largest common scale that fits, not an arbitrary cut
    assert record["kept_flops_ratio"] == pytest.approx(measured, rel=1e-6)
    projection = record["projection"]
    assert projection["cap"] == kappa and projection["learnt_widths"] == learnt
    assert projection["learnt_flops_ratio"] > kappa + 0.2 and 0 < projection["scale"] < 1
    scale = projection["scale"]  # every site keeps its share of what it learnt
    assert record["widths"] == {site: max(minimums[site], math.floor(scale * width + 1e-9))
                                for site, width in learnt.items()}


@pytest.mark.parametrize("name", ["grnn", "resnet18"])
def test_the_strategy_caps_the_flops_each_epoch_and_ends_at_kappa_even_if_widths_never_move(name):
    """The worst case for the penalty (no steps at all): the schedule cuts to kappa by the last epoch but one,
    so the last epoch trains the final shape and the final shrink has nothing left to project."""
    kappa, epochs = 0.25, 4
    strategy = build_strategy("dynamic-width", {"kappa": kappa, "seconds": SAMPLES / 16000})
    dynamic_stage, shrink_stage = strategy.stages(epochs)
    torch.manual_seed(0)
    model = build_model(name, **AT_SCALE[name])
    for transform in dynamic_stage.transforms:
        model = transform.apply(model)
    budget = getattr(model, BUDGET_NAME)
    for epoch in range(epochs):
        cap = strategy.flops_cap(epoch, epochs)
        changed = dynamic_stage.after_epoch(model, epoch)
        assert isinstance(changed, Shrink) == (epoch < epochs - 1)  # nothing to cut once at kappa
        assert budget.kept_ratio() <= cap + 1e-9
        if changed:
            assert changed.record()["projection"]["cap"] == cap
    assert budget.kept_ratio() <= kappa + 1e-9
    final = shrink_stage.transforms[0]
    final.apply(model)
    assert "projection" not in final.record()
    assert flops_ratio(model, name) <= kappa + 0.02


def test_a_trained_run_meets_kappa_and_its_projected_shrink_replays(tmp_path):
    """Default settings, one epoch at GRNN's learning rate: too few steps for the penalty, so the final shrink
    projects; the fine-tune epoch trains the projected shape, and meta.json rebuilds it."""
    from plastispoof.training import train

    kappa = 0.25
    corpus = write_tiny_corpus(tmp_path / "corpus", seconds=SAMPLES / 16000)
    strategy = {"name": "dynamic-width", "args": {"kappa": kappa, "seconds": SAMPLES / 16000, "finetune_epochs": 1}}
    cfg = tiny_config(tmp_path / "runs", corpus, name="dw", model={"name": "grnn", "args": {}}, strategy=strategy,
                      data={"num_samples": SAMPLES}, train={"epochs": 1, "lr": 3e-3})
    run_dir = train(cfg)
    meta = read_meta(run_dir)
    final = meta["transforms"][-1]
    assert final["kind"] == "shrink" and final["final"]
    assert final["projection"]["learnt_flops_ratio"] > kappa + 0.02 >= final["kept_flops_ratio"]
    assert [(stage["name"], stage["epochs"]) for stage in meta["stages"]] == [("dynamic", 1), ("shrink", 1)]
    model, _ = load_run_model(run_dir)  # replays every record of meta.json, then loads the weights strictly
    assert [gru.hidden_size for gru in model.grus] == [final["widths"][f"gru{i}"] for i in range(4)]
    assert flops_ratio(model, "grnn") <= kappa + 0.02
    assert flops_ratio(model, "grnn") == pytest.approx(final["kept_flops_ratio"], rel=1e-6)


def test_a_kappa_below_the_models_floor_is_refused_up_front_but_a_recorded_one_replays():
    torch.manual_seed(0)
    settings = DynamicWidthSettings(kappa=0.05, seconds=SAMPLES / 16000)
    model = build_model("grnn")
    floor = r"^kappa 0.05 is below this model's floor 0\.16\d \(the FLOPs of its front-end, head"
    with pytest.raises(InputError, match=floor):
        MakeWidthsDynamic(settings).apply(model)
    assert not any(isinstance(module, DynamicWidth) for module in model.modules())  # refused before any change
    # The floor is what the model costs with every site at its minimum width.
    at_floor = build_model("grnn")
    MakeWidthsDynamic(DynamicWidthSettings(kappa=NO_TARGET, seconds=SAMPLES / 16000)).apply(at_floor)
    for _, gate in dynamic_sites(at_floor):
        gate.set_width(gate.min_width)
    Shrink(final=True).apply(at_floor)
    floor = flops_ratio(at_floor, "grnn")
    with pytest.raises(InputError, match=f"floor {math.ceil(floor * 1000) / 1000:.3f} "):
        MakeWidthsDynamic(settings).apply(build_model("grnn"))
    MakeWidthsDynamic(DynamicWidthSettings(kappa=floor + 1e-4, seconds=SAMPLES / 16000)).apply(build_model("grnn"))
    # A run recorded with such a kappa (by an older version) still rebuilds.
    record = {"kind": "dynamic-width", **settings.model_dump(), "sites": ["gru0", "gru1", "gru2", "gru3"]}
    rebuilt = apply_transforms(build_model("grnn"), [record])
    assert len(dynamic_sites(rebuilt)) == 4


def test_the_cli_refuses_a_kappa_below_the_floor_in_one_line(tmp_path):
    import subprocess
    import sys

    import yaml

    corpus = write_tiny_corpus(tmp_path / "corpus", seconds=SAMPLES / 16000)
    cfg = tiny_config(tmp_path / "runs", corpus, name="dw", model={"name": "grnn", "args": {}},
                      strategy={"name": "dynamic-width", "args": {"kappa": 0.05}}, data={"num_samples": SAMPLES})
    path = tmp_path / "dw.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    done = subprocess.run([sys.executable, "-m", "plastispoof.cli", "train", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: kappa 0.05 is below this model's floor 0.16")
