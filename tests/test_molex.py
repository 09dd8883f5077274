"""MoLEx: the routed mixture of LoRA experts, its regularisers, what trains, adding experts, replay, usage report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_run import run_cli
from tiny_run import tiny_config, write_tiny_corpus
from torch import nn

from plastispoof.analysis.expert_usage import ExpertUsage, expert_usage_report
from plastispoof.capacity.base import apply_transforms, build_strategy
from plastispoof.capacity.molex import MoLExLinear, MoLExOptions, MoLExTransform, molex_layers
from plastispoof.config import dump_config
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_text
from plastispoof.models.base import build_model
from plastispoof.runs import load_state_strict, read_weights, save_weights, write_meta
from plastispoof.training.losses import auxiliary_loss

SAMPLES = 4000  # 0.25 s = 12 frames: more than the 10 that wav2vec2's training-time time masking spans


def tiny_wav2vec2() -> nn.Module:
    return build_model("wav2vec2", size="small", num_layers=2)


def randomise_up_projections(layer: MoLExLinear, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for expert in layer.experts:
            expert.lora_B.copy_(torch.randn(expert.lora_B.shape, generator=generator))


def train_steps(model: nn.Module, steps: int = 2, seed: int = 1) -> None:
    """A few AdamW steps on cross-entropy plus the modules' auxiliary losses, as the trainer does."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    model.train()
    for _ in range(steps):
        waveform = torch.randn(2, SAMPLES, generator=generator)
        loss = nn.functional.cross_entropy(model(waveform), torch.tensor([0, 1])) + auxiliary_loss(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def snapshot(model: nn.Module, keep) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if keep(k)}


# ------------------------------------------------------------------------------------------- the layer


def test_fresh_layer_equals_base_and_forward_matches_the_formula():
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    layer = MoLExLinear(base, num_experts=3, rank=2, alpha=4.0, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 5, 12)
    assert torch.equal(layer(x), base(x))  # B = 0: exactly the base layer

    randomise_up_projections(layer)
    gates = torch.softmax(layer.router(x), -1)
    expected = base(x) + sum(gates[..., e:e + 1] * (x @ expert.lora_A.T @ expert.lora_B.T) * (4.0 / 2)
                             for e, expert in enumerate(layer.experts))
    torch.testing.assert_close(layer(x), expected)


def test_top_k_and_utterance_routing():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 16)
    layer = MoLExLinear(nn.Linear(16, 16), num_experts=4, top_k=2)
    gates = layer.gates(x)
    assert ((gates > 0).sum(-1) == 2).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, 7))
    full = torch.softmax(layer.router(x), -1)
    kept = full.topk(2, -1).indices
    torch.testing.assert_close(gates.gather(-1, kept), full.gather(-1, kept) / full.gather(-1, kept).sum(-1, True))

    layer.routing = "utterance"
    gates = layer.gates(x)
    assert gates.shape == (3, 1, 4)
    torch.testing.assert_close(gates, layer.gates(x.mean(1, keepdim=True)))
    # per-utterance statistics of the last forward
    assert layer.usage.mean_gate.shape == (3, 4) and layer.usage.top1_share.shape == (3, 4)
    torch.testing.assert_close(layer.usage.top1_share.sum(-1), torch.ones(3))


def test_orthogonality_is_zero_for_disjoint_subspaces_and_scale_free():
    layer = MoLExLinear(nn.Linear(8, 8), num_experts=2, rank=2)
    with torch.no_grad():
        layer.experts[0].lora_A.copy_(torch.eye(8)[:2])
        layer.experts[1].lora_A.copy_(torch.eye(8)[2:4] * 5)
    assert layer.orthogonality().item() == 0.0
    with torch.no_grad():
        layer.experts[1].lora_A.copy_(torch.eye(8)[:2] * 5)  # the same subspace, another scale
    # Identical normalised A with two equal singular values: ||A A^T||_F^2 / ||A||_F^4 = 2 / 4.
    assert layer.orthogonality().item() == pytest.approx(0.5)


def test_load_balance_is_one_when_uniform_and_n_when_collapsed():
    layer = MoLExLinear(nn.Linear(8, 8), num_experts=4).train()
    layer.balance_weight = 1.0
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        layer.router.weight.zero_()
    layer(x)
    assert layer.load_balance().item() == pytest.approx(1.0)
    with torch.no_grad():
        layer.router.bias.copy_(torch.tensor([30.0, 0.0, 0.0, 0.0]))
    layer(x)
    assert layer.load_balance().item() == pytest.approx(4.0, rel=1e-4)
    layer.orth_weight = 0.0
    assert layer.auxiliary_loss().item() == pytest.approx(4.0, rel=1e-4)
    layer.eval()
    layer(x)  # evaluation keeps no graph for the loss
    assert layer.load_balance().item() == 0.0


# ------------------------------------------------------------------------------------- on wav2vec2


def test_only_experts_routers_and_head_train_and_backbone_stays_identical():
    torch.manual_seed(0)
    options = MoLExOptions(targets=["q_proj", "v_proj", "intermediate_dense"], balance_weight=0.01)
    model = MoLExTransform(options).apply(tiny_wav2vec2(), torch.Generator().manual_seed(0))
    assert len(molex_layers(model)) == 2 * 3
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.named_parameters()
                         if ".experts." in name or ".router." in name or name.startswith("head.")}
    backbone = snapshot(model, lambda k: k.startswith("ssl.") and ".experts." not in k and ".router." not in k)
    adapters = snapshot(model, lambda k: ".lora_B" in k or ".router." in k)
    assert auxiliary_loss(model) is not None
    train_steps(model)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in backbone.items())
    assert all(not torch.equal(after[k], v) for k, v in adapters.items())


def test_added_experts_train_alone_and_records_replay(tmp_path):
    torch.manual_seed(0)
    first = MoLExTransform(MoLExOptions(num_experts=2, rank=4, routing="utterance"))
    model = first.apply(tiny_wav2vec2(), torch.Generator().manual_seed(0))
    train_steps(model, steps=2)
    old_experts = snapshot(model, lambda k: ".experts." in k)
    old_routers = snapshot(model, lambda k: ".router." in k)

    second = MoLExTransform(MoLExOptions(add_experts=2, train_head=False, orth_weight=0.1))
    model = second.apply(model, torch.Generator().manual_seed(1))
    for _, layer in molex_layers(model):
        assert layer.num_experts == 4 and layer.router.out_features == 4 and layer.orth_weight == 0.1
    state = model.state_dict()
    for key, value in old_routers.items():  # old router rows kept
        assert torch.equal(state[key][:2], value)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.named_parameters()
                         if ".experts.2." in name or ".experts.3." in name or ".router." in name}
    head = snapshot(model, lambda k: k.startswith("head."))
    train_steps(model, steps=2, seed=2)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in {**old_experts, **head}.items())
    assert not torch.equal(state["ssl.encoder.layers.0.attention.q_proj.experts.3.lora_B"],
                           torch.zeros_like(state["ssl.encoder.layers.0.attention.q_proj.experts.3.lora_B"]))

    save_weights(state, tmp_path / "model.safetensors")
    records = json.loads(json.dumps([first.record(), second.record()]))
    rebuilt = apply_transforms(tiny_wav2vec2(), records)
    load_state_strict(rebuilt, read_weights(tmp_path / "model.safetensors"), "model.safetensors")
    waveform = torch.randn(2, SAMPLES, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval().score(waveform), model.eval().score(waveform))


@pytest.mark.parametrize("kind, targets", [("hubert", ["q_proj", "v_proj"]),
                                           ("wavlm", ["intermediate_dense", "output_dense"])])
def test_experts_train_inside_other_ssl_encoders(kind, targets):
    model = build_model("ssl-linear", frontend={"kind": kind, "size": "tiny"})
    model = MoLExTransform(MoLExOptions(targets=targets)).apply(model)
    layers = molex_layers(model)
    assert len(layers) == 2 * len(targets)  # the tiny encoders have 2 layers
    with torch.no_grad():
        for _, layer in layers:
            randomise_up_projections(layer)  # so that every A and the router get a gradient too
    model.train()(torch.randn(2, SAMPLES)).sum().backward()
    for name, parameter in model.named_parameters():
        trains = ".experts." in name or ".router." in name or name.startswith("backend.")
        assert parameter.requires_grad == trains, name
        assert (parameter.grad is not None and parameter.grad.abs().sum() > 0) == trains, name


def test_refuses_a_front_end_that_runs_without_gradients():
    model = build_model("ssl-linear", frontend={"kind": "wav2vec2", "size": "tiny", "freeze": True})
    with pytest.raises(InputError, match="frontend runs its SSL encoder without gradients"):
        MoLExTransform().apply(model)


def test_option_and_structure_errors():
    with pytest.raises(InputError, match="add_experts needs baseline_run"):
        build_strategy("molex", {"add_experts": 2})
    with pytest.raises(InputError, match="top_k 5 exceeds the 4 experts"):
        build_strategy("molex", {"top_k": 5})
    with pytest.raises(InputError, match="'routing'"):
        build_strategy("molex", {"routing": "frame"})
    stages = build_strategy("molex", {"add_experts": 2, "baseline_run": "runs/m"}).stages(4)
    assert [(s.name, s.epochs, s.init_from) for s in stages] == [("molex-adapt", 4, "runs/m")]
    with pytest.raises(InputError, match="already has MoLEx experts"):
        MoLExTransform().apply(MoLExTransform().apply(tiny_wav2vec2()))
    with pytest.raises(InputError, match="needs a model that already has MoLEx experts"):
        MoLExTransform(MoLExOptions(add_experts=1)).apply(tiny_wav2vec2())


# ------------------------------------------------------------------------------------- usage report


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), counts={"train": (6, 6), "dev": (4, 4),
                                                                         "eval": (3, 6)})


def test_expert_usage_report_of_a_hand_made_run(tmp_path, corpus, capsys):
    # A run directory written by hand (config, meta with the transform record, weights), whose routers all
    # prefer expert 2: the report must count every trial once per attack and find expert 2 on top.
    cfg = tiny_config(tmp_path, corpus, name="molex", data={"num_samples": SAMPLES, "eval_batch_size": 4},
                      model={"name": "wav2vec2", "args": {"size": "small", "num_layers": 2}})
    transform = MoLExTransform(MoLExOptions(num_experts=3))
    model = transform.apply(build_model(cfg.model.name, **cfg.model.args))
    for _, layer in molex_layers(model):
        with torch.no_grad():
            layer.router.bias.copy_(torch.tensor([0.0, 0.0, 3.0]))
    run = cfg.run_dir
    atomic_write_text(run / "config.yaml", dump_config(cfg))
    write_meta(run, {"model": {"name": cfg.model.name, "args": cfg.model.args}, "transforms": [transform.record()]})
    save_weights(model.state_dict(), run / "model.safetensors")

    table = expert_usage_report(run, dataset="asv19-la", root=corpus, subset="eval")
    report = json.loads((run / "reports" / "experts-asv19-la-eval.json").read_text())
    assert report["attacks"] == ["bonafide", "A01", "A02"]
    assert report["utterances"] == {"bonafide": 3, "A01": 3, "A02": 3}
    assert len(report["layers"]) == 4 and report["layers"][0] == "0.attention.v_proj"
    gates = np.array(report["mean_gate"])
    assert gates.shape == (4, 3, 3)
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-6)
    assert (gates.argmax(-1) == 2).all()
    rows = (run / "reports" / "experts-asv19-la-eval.csv").read_text().splitlines()
    assert rows[0] == "layer,attack,expert,utterances,mean_gate,top1_share" and len(rows) == 1 + 5 * 3 * 3
    assert (run / "reports" / "experts-asv19-la-eval.png").stat().st_size > 1000
    assert "A02" in table and "E2" in table
    # Every class sends nearly every token to expert 2: almost no information about the attack in the choice.
    information = np.array(report["attack_information_bits"])
    assert information.shape == (4,) and (information >= 0).all() and (information < 0.05).all()
    again = ExpertUsage.from_json(report)  # a report read back gives the same figures
    np.testing.assert_allclose(again.mean_gate, gates)
    np.testing.assert_allclose(again.attack_information, information)
    # the experts verb prints the same table through the real command line
    code, out, err = run_cli(capsys, "experts", run, "--dataset", "asv19-la", "--root", corpus)
    assert code == 0 and out.strip() == table.strip(), err


def test_expert_usage_report_refuses_a_run_without_experts(tmp_path, corpus):
    cfg = tiny_config(tmp_path, corpus, name="plain")
    model = build_model(cfg.model.name, **cfg.model.args)
    atomic_write_text(cfg.run_dir / "config.yaml", dump_config(cfg))
    write_meta(cfg.run_dir, {"model": {"name": cfg.model.name, "args": cfg.model.args}, "transforms": []})
    save_weights(model.state_dict(), cfg.run_dir / "model.safetensors")
    with pytest.raises(InputError, match="has no MoLEx experts"):
        expert_usage_report(cfg.run_dir, dataset="asv19-la", root=corpus)


@pytest.mark.slow
def test_train_molex_then_add_experts_then_report(tmp_path, corpus):
    from plastispoof.training import train

    sections = dict(data={"num_samples": SAMPLES, "batch_size": 4, "eval_batch_size": 8},
                    model={"name": "wav2vec2", "args": {"size": "small", "num_layers": 1}},
                    train={"epochs": 1, "lr": 0.01, "max_steps_per_epoch": 2})
    first = train(tiny_config(tmp_path, corpus, name="molex", strategy={"name": "molex", "args": {}}, **sections))
    adapt = {"name": "molex", "args": {"add_experts": 2, "baseline_run": str(first), "train_head": False}}
    second = train(tiny_config(tmp_path, corpus, name="adapt", strategy=adapt, **sections))

    before, after = read_weights(first / "model.safetensors"), read_weights(second / "model.safetensors")
    old = [k for k in before if ".router." not in k]  # backbone, old experts, head (train_head False)
    assert old and all(torch.equal(before[k], after[k]) for k in old)
    assert any(k.endswith("experts.5.lora_B") for k in after)
    table = expert_usage_report(second, dataset="asv19-la", root=corpus, subset="eval")
    report = json.loads((second / "reports" / "experts-asv19-la-eval.json").read_text())
    assert report["experts"] == 6 and sum(report["utterances"].values()) == 9
    assert "bonafide" in table
