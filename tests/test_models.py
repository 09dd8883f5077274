"""ResNet, GRNN and wav2vec2: build, forward/backward, Table I sizes, growth sites, determinism."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from plastispoof.errors import InputError
from plastispoof.models.base import build_model, count_parameters, get_module

# Small enough to run forward and backward in well under a second each.
TINY = {
    "resnet18": {"width": 4},
    "resnet34": {"width": 4},
    "grnn": {},
    "wav2vec2": {"num_layers": 1},
    "wav2vec2-small": {"num_layers": 2},
}


def one_second(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 16000, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", TINY)
def test_forward_gives_two_logits_and_backward_reaches_every_trainable_weight(name):
    torch.manual_seed(0)
    model = build_model(name, **TINY[name])
    logits = model(one_second())
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert model.score(one_second()).shape == (2,)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # wav2vec2's masked_spec_embed is only used when SpecAugment masks frames, which is random
    assert [n for n in missing if not n.endswith("masked_spec_embed")] == []


# Published sizes in M parameters: Table I of the dropin paper, and the dynamic-width paper's ResNet34
# baseline (5.4 M, our width 32).
@pytest.mark.parametrize("name, args, millions", [
    ("resnet18", {}, 11.17), ("resnet34", {"width": 32}, 5.4), ("grnn", {}, 0.06), ("wav2vec2", {}, 95.57),
    ("wav2vec2-small", {}, 11.25),
])
def test_parameter_counts_match_the_papers(name, args, millions):
    with torch.device("meta"):  # shapes only: no memory, no weight initialisation
        count = count_parameters(build_model(name, **args))
    assert abs(count / 1e6 - millions) <= 0.02 * millions, f"{name}: {count / 1e6:.3f} M vs {millions} M"


# torchvision's published counts for its ImageNet models (3-channel stem, 1000 classes).
@pytest.mark.parametrize("name, published", [("resnet18", 11_689_512), ("resnet34", 21_797_672)])
def test_resnet_body_is_exactly_torchvisions(name, published):
    with torch.device("meta"):
        model = build_model(name)
        # give ours the ImageNet stem and head; everything else is counted as built
        model.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        model.fc = nn.Linear(512, 1000)
        assert count_parameters(model) - count_parameters(model.frontend) == published


def assert_site_resolves(model: nn.Module, site) -> None:
    producer = get_module(model, site.producer)
    if site.kind == "conv":
        assert isinstance(producer, (nn.Conv1d, nn.Conv2d))
        width = producer.out_channels
    elif site.kind == "linear":
        assert isinstance(producer, nn.Linear)
        width = producer.out_features
    elif site.kind == "gru":
        assert isinstance(producer, nn.GRU) and producer.num_layers == 1
        width = producer.hidden_size
    else:
        projections = [get_module(producer, p) for p in ("q_proj", "k_proj", "v_proj")]
        assert all(isinstance(p, nn.Linear) for p in projections)
        assert len({p.out_features for p in projections}) == 1
        width = projections[0].out_features
    for path in site.norms:
        assert get_module(model, path).num_features == width
    assert site.consumers
    for path in site.consumers:
        consumer = get_module(model, path)
        consumed = {nn.Conv2d: "in_channels", nn.Conv1d: "in_channels", nn.Linear: "in_features",
                    nn.GRU: "input_size"}[type(consumer)]
        assert getattr(consumer, consumed) == width, f"{site.name}: {path}"


@pytest.mark.parametrize("name, expected_sites", [
    ("resnet18", 8), ("resnet34", 16), ("grnn", 4), ("wav2vec2-small", 4),
])
def test_growth_sites_resolve_with_matching_widths(name, expected_sites):
    model = build_model(name, **TINY[name])
    sites = model.growth_sites()
    assert len(sites) == expected_sites
    assert len({s.name for s in sites}) == len(sites)
    for site in sites:
        assert_site_resolves(model, site)
        assert model.site(site.name) == site


def test_resnet_sites_are_every_block_inner_conv():
    model = build_model("resnet34", width=4)
    inner_convs = {n for n, m in model.named_modules() if n.endswith(".conv1") and isinstance(m, nn.Conv2d)}
    sites = model.growth_sites()
    assert {s.producer for s in sites} == inner_convs
    assert {s.group for s in sites} == {"layer1", "layer2", "layer3", "layer4"}


def test_wav2vec2_sites_cover_attention_and_ffn_of_every_layer():
    model = build_model("wav2vec2-small", num_layers=3)
    groups = [s.group for s in model.growth_sites()]
    assert groups.count("attention") == groups.count("ffn") == 3
    assert model.site("encoder.2.ffn").producer == "ssl.encoder.layers.2.feed_forward.intermediate_dense"


@pytest.mark.parametrize("name", ["resnet18", "grnn", "wav2vec2-small"])  # one per class
def test_same_seed_same_logits(name):
    def logits(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        model = build_model(name, **TINY[name]).eval()
        with torch.no_grad():
            return model(one_second())

    assert torch.equal(logits(7), logits(7))
    assert not torch.equal(logits(7), logits(8))


@pytest.mark.parametrize("name", ["resnet18", "grnn", "wav2vec2-small"])
def test_config_round_trips_through_json(name):
    model = build_model(name, **TINY[name])
    rebuilt = build_model(name, **json.loads(json.dumps(model.config)))
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_wav2vec2_small_alias_and_feature_encoder_freezing():
    small = build_model("wav2vec2-small", num_layers=1)
    assert small.config["size"] == "small" and small.ssl.config.hidden_size == 256
    assert build_model("wav2vec2", size="small", num_layers=1).ssl.config.hidden_size == 256
    frozen = {p.requires_grad for p in small.ssl.feature_extractor.parameters()}
    assert frozen == {False}
    trainable = build_model("wav2vec2-small", num_layers=1, freeze_feature_encoder=False)
    assert all(p.requires_grad for p in trainable.ssl.feature_extractor.parameters())


def test_wav2vec2_loads_local_pretrained_weights(tmp_path):
    torch.manual_seed(0)
    source = build_model("wav2vec2-small", num_layers=1)
    source.ssl.save_pretrained(tmp_path)
    loaded = build_model("wav2vec2", pretrained=str(tmp_path))
    assert loaded.ssl.config.hidden_size == 256 and len(loaded.ssl.encoder.layers) == 1
    for key, value in source.ssl.state_dict().items():
        assert torch.equal(loaded.ssl.state_dict()[key], value), key


def test_bad_model_arguments_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="cannot load wav2vec2 weights"):
        build_model("wav2vec2", pretrained=str(tmp_path))  # an empty directory
    with pytest.raises(InputError, match="size"):
        build_model("wav2vec2", size="huge")
    with pytest.raises(InputError, match="pooling"):
        build_model("grnn", pooling="max")
    with pytest.raises(InputError, match="4 stages"):
        build_model("resnet18", layers=[2, 2])
    with pytest.raises(InputError, match="unexpected keyword"):
        build_model("resnet18", depth=18)
