"""Dropin: neuron growth on every registered model's sites, frozen training, pruning, replay, strategies."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from plastispoof.capacity import apply_transforms, build_strategy
from plastispoof.capacity.dropin import Dropin, GrowthOptions
from plastispoof.capacity.growth import (
    GrownLayer,
    GrownModule,
    NeuronInit,
    grow_site,
    grown_modules,
    materialise,
    prune_added,
    resolve_count,
    select_sites,
    site_width,
)
from plastispoof.errors import InputError
from plastispoof.models.base import build_model, count_parameters, get_module
from plastispoof.registry import MODELS, load_builtins

# Tiny versions of every registered model with growth sites (forward + backward well under a second).
TINY = {
    "resnet18": {"width": 4},
    "resnet34": {"width": 2},
    "grnn": {"hidden_sizes": [6, 5, 4]},
    "wav2vec2": {"num_layers": 1},
    "wav2vec2-small": {"num_layers": 2},
    "aasist": {"filts": [20, [1, 4], [4, 4], [4, 6], [6, 6]], "gat_dims": [6, 4]},
    "aasist-l": {},
    "ssl-linear": {"frontend": {"size": "tiny"}},
    "ssl-nes2net": {"frontend": {"size": "tiny"}},
    "ssl-nes2net-x": {"frontend": {"size": "tiny"}},
    "ssl-aasist": {"frontend": {"size": "tiny"}},
}
SAMPLES = 6000  # the shortest input every tiny model takes (GRNN's deltas need 9 frames)


def waveforms(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, SAMPLES, generator=torch.Generator().manual_seed(seed))


def tiny(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, **TINY[name])


def grow_all(model: nn.Module, function_preserving: bool = False, seed: int = 1) -> None:
    init = NeuronInit(sigma=0.1, function_preserving=function_preserving, generator=torch.Generator().manual_seed(seed))
    for site in model.growth_sites():
        grow_site(model, site, resolve_count(model, site), init)


def train_steps(model: nn.Module, steps: int) -> None:
    model.train()
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, labels = waveforms(), torch.tensor([0, 1])
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        optimiser.step()


def test_every_registered_model_has_a_tiny_config():
    load_builtins()
    # Models that test helpers register (tests/tiny_run.py) are not the toolkit's.
    builtin = {name for name, factory in MODELS.items()
               if getattr(factory, "func", factory).__module__.startswith("plastispoof.")}
    assert builtin <= set(TINY), f"add tiny configs for {builtin - set(TINY)}"


@pytest.mark.parametrize("name", TINY)
def test_dropin_lifecycle_on_every_model(name):
    """One model build per registered model (keeps the file fast): function-preserving frozen growth ->
    frozen training -> the same outputs as a plain wide model -> pruning back to the original architecture."""
    model = tiny(name).train()
    if not model.growth_sites():
        pytest.skip(f"{name} declares no growth sites in this configuration")
    with torch.no_grad():
        model(waveforms(seed=2))  # non-trivial BN running statistics
    model.eval()
    with torch.no_grad():
        before = model(waveforms(seed=3))
    original = {key: p.detach().clone() for key, p in model.named_parameters()}
    widths = {site.name: site_width(model, site) for site in model.growth_sites()}

    options = GrowthOptions(layers="all", function_preserving=True, sigma=0.1)
    Dropin(options, freeze_original=True).apply(model, torch.Generator().manual_seed(0))
    assert {site.name: site_width(model, site) for site in model.growth_sites()} == {
        site: 2 * width for site, width in widths.items()}
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(waveforms(seed=3)), before, atol=1e-5, rtol=0)

    added = {key: p.detach().clone() for key, p in model.named_parameters()
             if key.replace(".base.", ".") not in original and p.numel()}
    train_steps(model, steps=2)
    now = dict(model.named_parameters())
    # frozen: untouched and no .grad (that no gradient was even computed and discarded is shown by
    # test_frozen_dropin_never_computes_a_frozen_weight_gradient)
    for key, value in original.items():
        parameter = now[key] if key in now else now[_wrapped_key(model, key)]
        assert torch.equal(parameter, value) and parameter.grad is None, key
    unchanged = [key for key, value in added.items() if torch.equal(now[key], value)]
    assert added and not unchanged

    model.eval()
    with torch.no_grad():
        grown = model(waveforms(seed=4))
    grown_count = count_parameters(model)
    plain = materialise(copy.deepcopy(model))
    assert not grown_modules(plain) and count_parameters(plain) == grown_count
    with torch.no_grad():
        torch.testing.assert_close(plain(waveforms(seed=4)), grown, atol=1e-5, rtol=1e-4)

    prune_added(model)
    fresh = tiny(name, seed=5)
    assert type(model) is type(fresh) and not grown_modules(model)
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert count_parameters(model) == count_parameters(fresh)
    assert count_parameters(model, trainable_only=True) == count_parameters(fresh, trainable_only=True)


def _wrapped_key(model: nn.Module, key: str) -> str:
    """``a.b.weight`` -> ``a.b.base.weight`` when ``a.b`` is a growth wrapper."""
    module_path, _, leaf = key.rpartition(".")
    assert isinstance(get_module(model, module_path), GrownModule), key
    return f"{module_path}.base.{leaf}"


class FrozenValueTracker(TorchFunctionMode):
    """Follows every tensor of a forward pass: is it an *activation* (computed from the model's input) or
    *weight-derived* (computed from parameters only, e.g. ``cat([W, extra])``)?

    Autograd computes a gradient for a tensor only when it requires grad. An activation's gradient never holds
    a weight's gradient, whatever weights made it (``conv(x, W)`` with a frozen ``W`` gives ``x`` a gradient
    and skips ``W``'s). A weight-derived tensor that contains frozen values and requires grad (frozen and new
    blocks assembled into one weight) does get a full gradient, frozen part included, which is then thrown
    away: that is what ``violations`` records, with the op that made it.
    """

    def __init__(self, frozen: list[nn.Parameter], inputs: list[torch.Tensor]):
        super().__init__()
        self.activations = {id(t) for t in inputs}
        self.frozen_derived = {id(p) for p in frozen}
        self.alive = [*frozen, *inputs]  # keep every tracked tensor alive, so no id is reused
        self.violations: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if any(id(t) in self.activations for t in inputs):
            self.activations.update(id(t) for t in outputs)
        elif any(id(t) in self.frozen_derived for t in inputs):
            self.frozen_derived.update(id(t) for t in outputs)
            self.violations += [getattr(func, "__name__", str(func)) for t in outputs if t.requires_grad]
        self.alive += outputs
        return out


class ConvBackwardLog(TorchDispatchMode):
    """Every convolution backward kernel: which weight it read and whether it computed that weight's gradient."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[int, bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default:
            weight, output_mask = args[2], args[10]
            self.calls.append((weight.untyped_storage().data_ptr(), bool(output_mask[1])))
        return func(*args, **(kwargs or {}))


def frozen_weight_gradients(model: nn.Module) -> tuple[list[str], ConvBackwardLog]:
    """One training forward + backward of ``model`` under both probes."""
    model.train()
    frozen = [p for p in model.parameters() if not p.requires_grad]
    x = waveforms()
    with FrozenValueTracker(frozen, [x]) as tracker:
        loss = F.cross_entropy(model(x), torch.tensor([0, 1]))
    with ConvBackwardLog() as log:
        loss.backward()
    return tracker.violations, log


def frozen_storages(model: nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in model.parameters() if not p.requires_grad}


@pytest.mark.parametrize("name", ["resnet18", "wav2vec2-small", "ssl-nes2net", "aasist-l"])
def test_frozen_dropin_never_computes_a_frozen_weight_gradient(name):
    model = tiny(name)
    Dropin(GrowthOptions(layers="all"), freeze_original=True).apply(model, torch.Generator().manual_seed(0))
    violations, log = frozen_weight_gradients(model)
    assert violations == []
    # Kernel level: convolutions over frozen weights ran backward (for their inputs) without weight gradients.
    frozen = frozen_storages(model)
    over_frozen = [computes_weight_grad for storage, computes_weight_grad in log.calls if storage in frozen]
    if name == "resnet18":
        assert len(over_frozen) > 0
    assert not any(over_frozen)


def test_the_probe_catches_a_frozen_block_assembled_into_one_weight(monkeypatch):
    """Control: the same frozen model, but every grown layer assembles [frozen | new] into one weight (a mask
    in disguise): its gradient holds the frozen block's, and the probe says so."""
    model = tiny("resnet18")
    Dropin(GrowthOptions(layers="all"), freeze_original=True).apply(model, torch.Generator().manual_seed(0))
    monkeypatch.setattr(GrownLayer, "forward", lambda self, x: self._run(x, *self.full_weight()))
    violations, log = frozen_weight_gradients(model)
    assert violations and set(violations) == {"cat"}
    assert sum(computes_weight_grad for _, computes_weight_grad in log.calls) > 0


def test_a_frozen_gru_computes_its_full_weight_gradient_as_documented():
    """docs/methods.md: the fused GRU needs every weight block in one call, so a frozen GRU's base weight
    gradient is computed (inside the assembled weights) and discarded; this pins that statement."""
    model = tiny("grnn")
    Dropin(GrowthOptions(layers="all"), freeze_original=True).apply(model, torch.Generator().manual_seed(0))
    violations, _ = frozen_weight_gradients(model)
    assert violations


def test_without_function_preserving_the_outputs_change():
    model = tiny("resnet18").eval()
    with torch.no_grad():
        before = model(waveforms())
    grow_all(model)
    with torch.no_grad():
        assert not torch.allclose(model(waveforms()), before, atol=1e-4)


def test_unfrozen_growth_trains_every_weight():
    model = tiny("grnn")
    original = {key: p.detach().clone() for key, p in model.named_parameters()}
    Dropin(GrowthOptions(layers="all")).apply(model)
    assert all(p.requires_grad for p in model.parameters())
    train_steps(model, steps=1)
    now = dict(model.named_parameters())
    assert all(not torch.equal(now[key if key in now else _wrapped_key(model, key)], value)
               for key, value in original.items())


def test_frozen_trains_the_head_only_when_asked():
    for train_head in (False, True):
        model = tiny("resnet18")
        Dropin(GrowthOptions(sites=["layer2.1"]), freeze_original=True, train_head=train_head).apply(model)
        assert model.fc.weight.requires_grad is train_head
        assert not model.conv1.weight.requires_grad


def test_prune_restores_trainability_but_keeps_what_the_model_froze():
    model = tiny("wav2vec2-small")
    trainable_before = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable_before != {n for n, _ in model.named_parameters()}  # its feature encoder is frozen
    Dropin(GrowthOptions(layers="random", num_layers=2), freeze_original=True).apply(model)
    prune_added(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable_before


@pytest.mark.parametrize("name", ["resnet18", "grnn", "wav2vec2-small", "aasist-l"])
def test_record_replays_to_the_same_shapes(name):
    grown = tiny(name)
    transform = Dropin(GrowthOptions(layers="random", num_layers=2, ratio=0.5), freeze_original=True)
    transform.apply(grown, torch.Generator().manual_seed(7))
    record = json.loads(json.dumps(transform.record()))
    assert record["kind"] == "dropin" and len(record["sites"]) == 2
    replayed = apply_transforms(tiny(name, seed=1), [record])
    assert _shapes(replayed) == _shapes(grown)
    assert {n for n, p in replayed.named_parameters() if p.requires_grad} == {
        n for n, p in grown.named_parameters() if p.requires_grad}
    replayed.load_state_dict(grown.state_dict(), strict=True)
    plain = apply_transforms(tiny(name, seed=1), [record, {"kind": "prune-added"}])
    assert _shapes(plain) == _shapes(tiny(name))


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def test_random_sites_follow_the_seed():
    model = tiny("resnet18")

    def pick(seed: int) -> list[str]:
        return [s.name for s in select_sites(model, None, "random", 3, torch.Generator().manual_seed(seed))]

    assert pick(42) == pick(42)
    assert len({tuple(pick(seed)) for seed in range(10)}) > 1
    order = [s.name for s in model.growth_sites()]
    assert all(len(set(p)) == 3 and p == sorted(p, key=order.index) for p in map(pick, range(5)))
    assert [s.name for s in select_sites(model, None, "last", 2)] == order[-2:]
    assert [s.name for s in select_sites(model, ["layer3.0", "layer1.1"])] == ["layer1.1", "layer3.0"]


def test_counts_ratios_and_attention_heads():
    model = tiny("wav2vec2-small")
    attention, ffn = model.site("encoder.0.attention"), model.site("encoder.0.ffn")
    assert resolve_count(model, ffn, count=5) == 5
    assert resolve_count(model, ffn, ratio=0.25) == get_module(model, ffn.producer).out_features // 4
    head_dim = get_module(model, attention.producer).head_dim
    assert resolve_count(model, attention, ratio=0.3) == head_dim  # 0.3 x 4 heads -> 1 head
    with pytest.raises(InputError, match="multiple"):
        resolve_count(model, attention, count=head_dim + 1)
    grow_site(model, attention, 2 * head_dim, NeuronInit(function_preserving=True))
    assert get_module(model, f"{attention.producer}.out_proj").added_inputs == 2 * head_dim


def test_growing_a_site_twice_accumulates():
    model = tiny("grnn").eval()
    with torch.no_grad():
        before = model(waveforms())
    init = NeuronInit(function_preserving=True)
    for _ in range(2):
        for site in model.growth_sites():
            grow_site(model, site, 3, init)
    assert site_width(model, model.site("gru0")) == 6 + 6
    with torch.no_grad():
        torch.testing.assert_close(model(waveforms()), before, atol=1e-5, rtol=0)


def test_bad_growth_requests_are_input_errors():
    model = tiny("resnet18")
    with pytest.raises(InputError, match="no growth site"):
        Dropin(GrowthOptions(sites=["layer9.0"])).apply(model)
    with pytest.raises(InputError, match="num_layers"):
        Dropin(GrowthOptions(num_layers=99)).apply(model)


def test_dropin_strategies_build_their_stages():
    frozen = build_strategy("dropin-frozen", {"num_layers": 2, "train_head": True}).stages(4)
    assert [(s.name, s.epochs, s.init_from) for s in frozen] == [("baseline", 4, None), ("dropin", 4, None)]
    grow = frozen[1].transforms[0]
    assert grow.freeze_original and grow.train_head and grow.options.num_layers == 2
    unfrozen = build_strategy("dropin-unfrozen", {"baseline_run": "runs/base"}).stages(3)
    assert [(s.name, s.init_from) for s in unfrozen] == [("dropin", "runs/base")]
    assert not unfrozen[0].transforms[0].freeze_original
    assert not build_strategy("dropin", {"frozen": False}).stages(1)[1].transforms[0].freeze_original
    for options, key in [({"count": 4, "ratio": 0.5}, "ratio"), ({"frozen": True}, "frozen"),
                         ({"layers": "middle"}, "layers"), ({"sigma": 0}, "sigma")]:
        with pytest.raises(InputError, match=key):
            build_strategy("dropin-frozen", options)


def test_full_size_resnet18_frozen_trains_exactly_the_added_neurons():
    # Table I: 11.17 M -> 14.28 M total, 1.47 M trainable; the paper's random layers are not given, so we
    # check what our mechanism guarantees: trainable = added (head frozen), and the deepest block at full
    # width adds the largest amount, 3.54 M (closest single site to the paper's +3.11 M).
    model = build_model("resnet18")
    baseline = count_parameters(model)
    Dropin(GrowthOptions(sites=["layer4.0"]), freeze_original=True).apply(model)
    total, trainable = count_parameters(model), count_parameters(model, trainable_only=True)
    # The same network written with plain torch layers, block layer4.0 twice as wide inside (1024 channels):
    wide = build_model("resnet18")
    block = wide.layer4[0]
    block.conv1 = nn.Conv2d(256, 1024, 3, stride=2, padding=1, bias=False)
    block.bn1 = nn.BatchNorm2d(1024)
    block.conv2 = nn.Conv2d(1024, 512, 3, padding=1, bias=False)
    assert total == count_parameters(wide)
    assert total - baseline == trainable == 3_539_968  # the layer4.0 figure of docs/methods.md


def test_the_dropin_stage_trains_at_its_own_learning_rate(tmp_path):
    from tiny_run import grnn_config, write_tiny_corpus

    from plastispoof.runs import METRICS, read_jsonl
    from plastispoof.training import train

    corpus = write_tiny_corpus(tmp_path / "corpus")
    cfg = grnn_config(tmp_path / "runs", corpus).model_copy(deep=True)
    cfg.train.scheduler, cfg.train.warmup_steps, cfg.train.lr = "none", 0, 0.003
    cfg.strategy.name, cfg.strategy.args = "dropin-frozen", {"lr": 0.05, "layers": "last"}
    records = read_jsonl(train(cfg) / METRICS)
    assert [(r["stage"], r["lr"]) for r in records] == [("baseline", 0.003), ("dropin", 0.05)]
