"""AASIST / AASIST-L: the official checkpoints load and behave, the graph math is the paper's, the parts compose."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from needs import skip_or_fail, unless
from torch import nn

from plastispoof.errors import InputError
from plastispoof.models.aasist import (
    AASIST_L_CONFIG,
    AASISTBackend,
    GraphAttentionLayer,
    GraphPool,
    HeterogeneousGraphAttentionLayer,
    load_official,
    mel_sinc_filters,
    read_state_dict,
)
from plastispoof.models.base import build_model, count_parameters, get_module, set_module

OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared/data/aasist"
CHECKPOINTS = {"aasist": "AASIST.pth", "aasist-l": "AASIST-L.pth"}
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
SAMPLES = 64600
SR = 16000

needs_checkpoints = unless(OFFICIAL_DIR.is_dir(), f"official AASIST checkpoints not found at {OFFICIAL_DIR}")


@pytest.fixture(scope="module")
def official() -> dict[str, nn.Module]:
    if not OFFICIAL_DIR.is_dir():
        skip_or_fail(f"official AASIST checkpoints not found at {OFFICIAL_DIR}")
    return {name: load_official(name, OFFICIAL_DIR / file) for name, file in CHECKPOINTS.items()}


def speech_like(seed: int, peak: float = 0.45) -> torch.Tensor:
    """4 s of a voiced source with a gliding F0, syllable-rate envelope and three formant-like resonances."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(SAMPLES) / SR
    start_phase = 6 * torch.rand(2, generator=gen)
    f0 = 110 + 60 * torch.rand(1, generator=gen) + 20 * torch.sin(2 * math.pi * 0.7 * t + start_phase[0])
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    source = sum(torch.sin(k * phase) / k for k in range(1, 40))
    envelope = (0.5 + 0.5 * torch.sin(2 * math.pi * 3.5 * t + start_phase[1])) ** 2
    signal = source * envelope + 0.02 * torch.randn(SAMPLES, generator=gen)
    freqs = torch.fft.rfftfreq(SAMPLES, 1 / SR)
    formants = sum(torch.exp(-(((freqs - centre) / width) ** 2))
                   for centre, width in [(500, 150), (1500, 200), (2500, 300)])
    signal = torch.fft.irfft(torch.fft.rfft(signal) * (formants + 0.05), n=SAMPLES)
    return signal / signal.abs().max() * peak


# --- the official checkpoints ---------------------------------------------------------------------------------

@needs_checkpoints
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_official_checkpoint_fits_exactly_and_every_tensor_is_loaded(name, official):
    state = read_state_dict(OFFICIAL_DIR / CHECKPOINTS[name])
    model_state = official[name].state_dict()
    assert list(model_state) == list(state)
    for key, tensor in state.items():
        assert model_state[key].shape == tensor.shape, key
        assert torch.equal(model_state[key], tensor), key


@needs_checkpoints
def test_parameter_counts_are_the_published_ones(official):
    assert count_parameters(official["aasist-l"]) == 85_306
    assert count_parameters(official["aasist"]) // 1000 == 297  # "297k" in the paper
    state = read_state_dict(OFFICIAL_DIR / "AASIST.pth")
    assert sum(t.numel() for t in state.values()) == 299_550
    not_buffers = sum(t.numel() for key, t in state.items() if not key.endswith(BN_BUFFERS))
    assert count_parameters(official["aasist"]) == not_buffers


@needs_checkpoints
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_every_parameter_takes_part_except_the_untrained_bn1(name, official):
    # The checkpoints' bn1 affine weights are exactly 1 and 0: the published conv1 reads the block input.
    state = read_state_dict(OFFICIAL_DIR / CHECKPOINTS[name])
    bn1 = [key for key in state if ".bn1." in key]
    assert len(bn1) == 5 * 5
    assert all(torch.all(state[key] == 1) for key in bn1 if key.endswith("weight"))
    assert all(torch.all(state[key] == 0) for key in bn1 if key.endswith("bias"))

    model = build_model(name)
    model.load_state_dict(state)
    untrained = {key for key in bn1 if key.endswith(("weight", "bias"))}
    # A bias that a training-mode BatchNorm follows has no gradient there (the batch mean takes it away): rounding
    # noise, or exactly 0 (the first block's channels-last path computes it so). Eval mode uses running statistics.
    before_a_norm = {key for key, _ in model.named_parameters()
                     if re.fullmatch(r"encoder\.\d\.0\.conv1\.bias|.*\.proj_with(out)?_att\.bias", key)}
    assert len(before_a_norm) == 6 + 2 * 6
    for mode, may_be_zero in (("train", untrained | before_a_norm), ("eval", untrained)):
        model.zero_grad(set_to_none=True)
        model.train(mode == "train")
        model(torch.randn(2, 8000)).sum().backward()
        no_grad = {key for key, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
        assert untrained <= no_grad <= may_be_zero, mode


@pytest.fixture(scope="module")
def tone_and_noise_logits(official) -> torch.Tensor:
    """The official AASIST's logits for 4 s of a 440 Hz tone and 4 s of white noise (one forward for two tests)."""
    t = torch.arange(SAMPLES) / SR
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t)
    noise = 0.1 * torch.randn(SAMPLES, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return official["aasist"](torch.stack([tone, noise]))


@needs_checkpoints
def test_forward_on_a_published_length_batch_gives_two_finite_logits(tone_and_noise_logits):
    assert tone_and_noise_logits.shape == (2, 2)
    assert torch.isfinite(tone_and_noise_logits).all()


@needs_checkpoints
def test_official_model_tells_a_clean_tone_from_white_noise(tone_and_noise_logits):
    # Neither signal is speech: the published AASIST calls both spoof, and the pure tone far more surely than
    # the noise. Measured on CPU (2-core VM, 2026-12-01): bona fide logits -5.20 (tone) and -2.78 (noise).
    tone_score, noise_score = tone_and_noise_logits[:, 1]  # the published score: the bona fide logit
    assert tone_score < noise_score - 1.0
    assert noise_score < 0.0


@needs_checkpoints
def test_scoring_is_deterministic_and_is_the_bona_fide_logit(official):
    model = official["aasist-l"]
    assert not model.training
    waveform = speech_like(seed=3)[None, :SR]
    with torch.no_grad():
        scores, logits = model.score(waveform), model(waveform)
    assert torch.equal(scores, logits[:, 1])  # bit-equal across two passes: deterministic, and index 1


@needs_checkpoints
def test_layer_inputs_on_speech_like_audio_match_the_checkpoints_batchnorm_statistics(official):
    # Without labelled data: a correctly wired network feeds each BatchNorm inputs whose per-channel means follow
    # the running means it learnt on speech.
    model = official["aasist"]
    inputs: dict[str, torch.Tensor] = {}
    norms = [f"encoder.{i}.0.bn2" for i in range(6)] + ["GAT_layer_S.bn", "GAT_layer_T.bn"]
    hooks = [get_module(model, path).register_forward_hook(
        lambda module, args, out, path=path: inputs.__setitem__(path, args[0])) for path in norms]
    try:
        with torch.no_grad():
            model(speech_like(seed=0)[None, :SR])
    finally:
        for hook in hooks:
            hook.remove()
    agreement = {}
    for path in norms:
        observed = inputs[path].transpose(0, 1).reshape(inputs[path].shape[1], -1).mean(dim=1)
        learnt = get_module(model, path).running_mean
        agreement[path] = torch.corrcoef(torch.stack([observed, learnt]))[0, 1].item()
    # Wired right: every layer > 0.65 and 0.92 on average here; with bn1 applied: 0.12 at worst, 0.58 on average.
    assert min(agreement.values()) > 0.5, agreement
    assert sum(agreement.values()) / len(agreement) > 0.85, agreement


# --- loading foreign files ------------------------------------------------------------------------------------

@needs_checkpoints
@pytest.mark.parametrize("name, file, fits",
                         [("aasist-l", "AASIST.pth", "aasist"), ("aasist", "AASIST-L.pth", "aasist-l")])
def test_a_checkpoint_of_the_other_variant_is_refused_naming_the_one_it_fits(name, file, fits):
    with pytest.raises(InputError, match=rf"does not fit model '{name}'.*fits model '{fits}'") as refused:
        load_official(name, OFFICIAL_DIR / file)
    # the counts add up: every mismatch is missing, unexpected or of another shape, out of the two sizes
    counts = re.search(r": (\d+) missing, (\d+) unexpected, (\d+) of another shape \(the file holds (\d+) tensors, "
                       r"the model (\d+);", str(refused.value))
    missing, unexpected, shaped, in_file, in_model = map(int, counts.groups())
    assert unexpected + shaped <= in_file and missing + shaped <= in_model and missing + unexpected + shaped > 0


def test_files_that_are_not_state_dicts_are_refused(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a pickle")
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "model": {"w": torch.zeros(1)}}, wrapped)
    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], a_list)
    unrelated = tmp_path / "unrelated.pth"
    torch.save(nn.Linear(2, 2).state_dict(), unrelated)

    for path, message in [(garbage, "not a PyTorch state_dict readable"), (wrapped, "2 entries are not tensors"),
                          (a_list, "holds a list"), (tmp_path / "missing.pth", "does not exist"),
                          (unrelated, "fits no known official model")]:
        with pytest.raises(InputError, match=message):
            load_official("aasist-l", path)


# --- the parts ------------------------------------------------------------------------------------------------

def _randomise_norm(norm: nn.BatchNorm1d, gen: torch.Generator) -> None:
    dim = norm.num_features
    norm.running_mean.copy_(torch.randn(dim, generator=gen))
    norm.running_var.copy_(torch.rand(dim, generator=gen) + 0.5)
    norm.weight.data.copy_(torch.randn(dim, generator=gen))
    norm.bias.data.copy_(torch.randn(dim, generator=gen))


def _attend(score_of, nodes: torch.Tensor, temperature: float) -> torch.Tensor:
    """Paper form, one pair at a time: a_ij = softmax_j(score(i, j) / t); returns sum_j a_ij x_j per node i."""
    count = nodes.shape[0]
    rows = []
    for i in range(count):
        weights = torch.softmax(torch.stack([score_of(i, j) for j in range(count)]) / temperature, dim=0)
        rows.append(sum(weights[j] * nodes[j] for j in range(count)))
    return torch.stack(rows)


def test_graph_attention_layer_is_the_papers_equation():
    gen = torch.Generator().manual_seed(0)
    layer = GraphAttentionLayer(6, 5, temperature=2.0).eval()
    _randomise_norm(layer.bn, gen)
    nodes = torch.randn(2, 7, 6, generator=gen)
    with torch.no_grad():
        got = layer(nodes)
        for b in range(2):
            x = nodes[b]

            def score(i, j, x=x):
                return layer.att_weight[:, 0] @ torch.tanh(layer.att_proj(x[i] * x[j]))

            updated = layer.proj_with_att(_attend(score, x, 2.0)) + layer.proj_without_att(x)
            expected = F.selu(F.batch_norm(updated, layer.bn.running_mean, layer.bn.running_var,
                                           layer.bn.weight, layer.bn.bias, eps=layer.bn.eps))
            torch.testing.assert_close(got[b], expected)


def test_heterogeneous_layer_uses_one_score_vector_per_edge_type_and_a_master_node():
    gen = torch.Generator().manual_seed(1)
    layer = HeterogeneousGraphAttentionLayer(6, 4, temperature=3.0).eval()
    _randomise_norm(layer.bn, gen)
    first, second = torch.randn(2, 3, 6, generator=gen), torch.randn(2, 4, 6, generator=gen)
    master = torch.randn(1, 1, 6, generator=gen)
    with torch.no_grad():
        got_first, got_second, got_master = layer(first, second, master)
        vectors = {(0, 0): layer.att_weight11, (1, 1): layer.att_weight22,
                   (0, 1): layer.att_weight12, (1, 0): layer.att_weight12}
        kinds = [0] * 3 + [1] * 4
        for b in range(2):
            x = torch.cat([layer.proj_type1(first[b]), layer.proj_type2(second[b])])

            def score(i, j, x=x):
                return vectors[kinds[i], kinds[j]][:, 0] @ torch.tanh(layer.att_proj(x[i] * x[j]))

            updated = layer.proj_with_att(_attend(score, x, 3.0)) + layer.proj_without_att(x)
            expected = F.selu(F.batch_norm(updated, layer.bn.running_mean, layer.bn.running_var,
                                           layer.bn.weight, layer.bn.bias, eps=layer.bn.eps))
            torch.testing.assert_close(got_first[b], expected[:3])
            torch.testing.assert_close(got_second[b], expected[3:])

            m = master[0, 0]
            master_scores = torch.stack([layer.att_weightM[:, 0] @ torch.tanh(layer.att_projM(x[i] * m))
                                         for i in range(7)])
            weights = torch.softmax(master_scores / 3.0, dim=0)
            expected_master = layer.proj_with_attM((weights[:, None] * x).sum(0)) + layer.proj_without_attM(m)
            torch.testing.assert_close(got_master[b, 0], expected_master)


def test_graph_pool_keeps_the_top_gated_nodes_scaled_by_their_gates():
    pool = GraphPool(0.7, 3).eval()
    nodes = torch.randn(2, 29, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        kept = pool(nodes)
        gates = torch.sigmoid(pool.proj(nodes))
    assert kept.shape == (2, 20, 3)  # int(29 * 0.7)
    for b in range(2):
        order = gates[b, :, 0].argsort(descending=True)[:20]
        torch.testing.assert_close(kept[b], nodes[b, order] * gates[b, order])
    assert GraphPool(0.01, 3).eval()(nodes).shape == (2, 1, 3)  # at least one node survives


def test_sinc_filters_tile_the_band_on_the_mel_scale():
    bank = mel_sinc_filters(70, 129)
    impulse = torch.zeros(129)
    impulse[64] = 1.0
    torch.testing.assert_close(bank.sum(0), impulse, atol=1e-6, rtol=0)  # bands tile 0 Hz .. Nyquist exactly
    torch.testing.assert_close(bank, bank.flip(-1))  # linear phase

    response = torch.fft.rfft(bank.double(), n=8192).abs() ** 2
    freqs = torch.fft.rfftfreq(8192, 1 / SR).double()
    centroids = (response * freqs).sum(1) / response.sum(1)
    top_mel = 2595 * math.log10(1 + 8000 / 700)
    edges = 700 * (10 ** (torch.linspace(0, top_mel, 71, dtype=torch.float64) / 2595) - 1)
    assert (centroids - (edges[1:] + edges[:-1]) / 2).abs().max() < 50  # Hz; linear spacing misses by 100s


def test_backend_runs_on_another_encoders_map_and_reads_the_official_graph_weights(official):
    backend = AASISTBackend(in_channels=128, gat_dims=[64, 32], pool_ratios=[0.5, 0.7, 0.5, 0.5],
                            temperatures=[2.0, 2.0, 100.0, 100.0], spectral_nodes=42).eval()
    assert backend(torch.randn(2, 128, 42, 67)).shape == (2, 2)
    with pytest.raises(InputError, match=r"expects a \(batch, 128, 42, time\) feature map"):
        backend(torch.randn(2, 128, 23, 67))

    model = official["aasist"]
    graph_only = AASISTBackend(in_channels=64).eval()
    state = read_state_dict(OFFICIAL_DIR / "AASIST.pth")
    graph_only.load_state_dict({k: v for k, v in state.items() if not k.startswith(("encoder.", "first_bn."))})
    with torch.no_grad():
        waveform = speech_like(seed=2)[None, :8000]
        torch.testing.assert_close(graph_only(model.encode(waveform)), model(waveform))


# --- the model as the rest of the toolkit sees it -------------------------------------------------------------

def test_registered_variants_carry_the_published_config_and_rebuild_from_it():
    light = build_model("aasist-l")
    assert light.config == AASIST_L_CONFIG
    rebuilt = build_model("aasist-l", **json.loads(json.dumps(light.config)))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in light.state_dict().items()}
    with pytest.raises(InputError, match="aasist"):
        build_model("aasist", no_such_option=1)
    with pytest.raises(InputError, match="at least 2315 samples"):
        light(torch.randn(1, 2000))


def test_growth_sites_widen_without_changing_the_output():
    torch.manual_seed(0)
    model = build_model("aasist-l").eval()
    waveform = torch.randn(2, 4000)
    with torch.no_grad():
        before = model(waveform)
    sites = model.growth_sites()
    assert [site.producer for site in sites] == [f"encoder.{i}.0.conv1" for i in range(6)]
    extra = 5
    for site in sites:
        conv1, (bn2,), (conv2,) = get_module(model, site.producer), site.norms, site.consumers
        wider = nn.Conv2d(conv1.in_channels, conv1.out_channels + extra, conv1.kernel_size, padding=conv1.padding)
        wider.weight.data[:conv1.out_channels] = conv1.weight.data
        wider.bias.data[:conv1.out_channels] = conv1.bias.data
        set_module(model, site.producer, wider)
        old_norm = get_module(model, bn2)
        norm = nn.BatchNorm2d(old_norm.num_features + extra).eval()
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(norm, name).data[:old_norm.num_features] = getattr(old_norm, name).data
        set_module(model, bn2, norm)
        old_consumer = get_module(model, conv2)
        consumer = nn.Conv2d(old_consumer.in_channels + extra, old_consumer.out_channels, old_consumer.kernel_size,
                             padding=old_consumer.padding)
        consumer.weight.data.zero_()  # new inputs start silent, so the function must not change
        consumer.weight.data[:, :old_consumer.in_channels] = old_consumer.weight.data
        consumer.bias.data = old_consumer.bias.data.clone()
        set_module(model, conv2, consumer)
    with torch.no_grad():
        torch.testing.assert_close(model(waveform), before)


# --- CPU fast paths: the same function as the whole-map layers -------------------------------------------------

def _with_random_norms(model: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine weights away from 0/1, so that folding bn2 into conv1 is really tested."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _randomise_norm(module, gen)
    return model


def _fast_and_whole(model: nn.Module, run):
    """``run(model)`` with the CPU fast paths on, then off (the plain layers on whole maps)."""
    results = []
    for fast in (True, False):
        model.cpu_fast_paths = fast
        results.append(run(model))
    model.cpu_fast_paths = True
    return results


@pytest.mark.parametrize("slice_elements", [4000, None])  # many slices (every edge case), and the default
@pytest.mark.parametrize("samples", [2315, 16000, 20001])  # shortest input, 1 s, a length the pools do not divide
def test_sliced_inference_computes_the_whole_map_encoder(monkeypatch, slice_elements, samples):
    from plastispoof.models.aasist import cpu_inference

    if slice_elements is not None:
        monkeypatch.setattr(cpu_inference, "SLICE_ELEMENTS", slice_elements)
    sliced_blocks = []
    inner = cpu_inference.block_inference
    monkeypatch.setattr(cpu_inference, "block_inference",
                        lambda block, x: sliced_blocks.append(block) or inner(block, x))
    torch.manual_seed(0)
    model = _with_random_norms(build_model("aasist-l"), seed=1).eval()
    waveform = 0.2 * torch.randn(2, samples, generator=torch.Generator().manual_seed(samples))
    with torch.no_grad():
        (fast_map, fast_logits), (whole_map, whole_logits) = _fast_and_whole(
            model, lambda m: (m.encode(waveform), m(waveform)))
    assert len(sliced_blocks) == 2 * 2 * 6  # encode and forward, two utterances, six blocks: it really ran
    assert fast_map.shape == whole_map.shape
    torch.testing.assert_close(fast_map, whole_map, rtol=1e-5, atol=1e-5 * whole_map.abs().max().item())
    torch.testing.assert_close(fast_logits, whole_logits, rtol=1e-5, atol=1e-5)


@needs_checkpoints
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_official_scores_are_the_same_on_the_fast_path(name, official):
    model = official[name]
    noise = 0.1 * torch.randn(SR, generator=torch.Generator().manual_seed(5))
    waveform = torch.stack([speech_like(seed=5)[:SR], noise])
    with torch.inference_mode():
        fast, whole = _fast_and_whole(model, lambda m: m.score(waveform))
    torch.testing.assert_close(fast, whole, rtol=0, atol=1e-5)


def _one_training_step(model: nn.Module, waveform: torch.Tensor, fast: bool, dtype: torch.dtype):
    """Logits, parameter gradients and floating buffers (float64) of one forward + CE + backward on a copy."""
    import copy

    twin = copy.deepcopy(model).to(dtype)
    twin.cpu_fast_paths = fast
    torch.manual_seed(1)  # the same dropout masks
    logits = twin(waveform.to(dtype))
    F.cross_entropy(logits, torch.arange(len(waveform)) % 2).backward()
    return (logits.detach().double(),
            {k: p.grad.double() for k, p in twin.named_parameters() if p.grad is not None},
            {k: b.double() for k, b in twin.named_buffers() if b.is_floating_point()})


def test_training_on_channels_last_maps_is_as_accurate_as_the_whole_map_layers(monkeypatch):
    from plastispoof.models.aasist import cpu_training

    trained_blocks = []
    inner = cpu_training.block_training
    monkeypatch.setattr(cpu_training, "block_training",
                        lambda block, x: trained_blocks.append(block) or inner(block, x))
    torch.manual_seed(0)
    model = build_model("aasist-l").train()
    waveform = 0.2 * torch.randn(2, SR, generator=torch.Generator().manual_seed(7))
    fast_logits, fast_grads, fast_stats = _one_training_step(model, waveform, True, torch.float32)
    assert len(trained_blocks) == 6  # the channels-last path really ran, once per block
    whole_logits, whole_grads, whole_stats = _one_training_step(model, waveform, False, torch.float32)
    true_logits, true_grads, true_stats = _one_training_step(model, waveform, False, torch.float64)
    assert len(trained_blocks) == 6  # the whole-map runs did not take it

    # The same function: in float64 both paths agree to 1e-10 (logits, every gradient, running statistics).
    exact_logits, exact_grads, exact_stats = _one_training_step(model, waveform, True, torch.float64)
    assert len(trained_blocks) == 12
    torch.testing.assert_close(exact_logits, true_logits, rtol=1e-10, atol=1e-12)
    for key, truth in {**true_grads, **true_stats}.items():
        exact = {**exact_grads, **exact_stats}[key]
        torch.testing.assert_close(exact, truth, rtol=1e-10, atol=1e-10 * truth.abs().max().item() + 1e-14, msg=key)

    torch.testing.assert_close(fast_logits, true_logits, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == true_grads.keys()
    # float32 gradients of a max-pooled network are only so exact: a near tie in a pool routes a gradient to another
    # element, so single elements can be far off in either float32 path (the whole-map layers themselves by up to
    # 5e-3 in block 1 here). The property is therefore on each gradient as a whole: against float64, its relative
    # L2 error is as small as the whole-map float32 one's, within a factor of 4, or within float32 training
    # accuracy (1e-3). On a CPU without AVX-512 (2026-12-06) oneDNN's channels-last weight gradient of block 2's
    # conv1 is 4.2e-4 off, spread evenly over its 4,608 weights (no tie), where the whole-map one is 5e-6 off.
    for key, truth in true_grads.items():
        norm = truth.norm().item() + 1e-12
        fast_error = (fast_grads[key] - truth).norm().item() / norm
        whole_error = (whole_grads[key] - truth).norm().item() / norm
        assert fast_error <= 4 * whole_error + 1e-3, (key, fast_error, whole_error)
    for key, truth in true_stats.items():  # BatchNorm running statistics: the batch statistics' precision
        assert (fast_stats[key] - truth).abs().max().item() <= 1e-5 * truth.abs().max().item() + 1e-7, key
        assert (whole_stats[key] - truth).abs().max().item() <= 1e-5 * truth.abs().max().item() + 1e-7, key


def test_channels_last_training_with_a_frozen_front_end_is_the_same_function():
    # first_bn frozen: the encoder's input needs no gradient, and the first block skips computing it
    torch.manual_seed(0)
    model = build_model("aasist-l").train()
    model.first_bn.requires_grad_(False)
    waveform = 0.2 * torch.randn(2, 12000, generator=torch.Generator().manual_seed(8))
    _, fast_grads, _ = _one_training_step(model, waveform, True, torch.float64)
    _, whole_grads, _ = _one_training_step(model, waveform, False, torch.float64)
    assert fast_grads.keys() == whole_grads.keys() and not any(key.startswith("first_bn") for key in fast_grads)
    for key, truth in whole_grads.items():
        torch.testing.assert_close(fast_grads[key], truth, rtol=1e-10, atol=1e-10 * truth.abs().max().item() + 1e-14,
                                   msg=key)


def test_channels_last_batch_statistics_keep_float32_precision_on_a_large_map():
    from plastispoof.models.aasist.cpu_training import batch_statistics

    # 2 x 24 x 21,490 positions per channel and an offset: torch's own channels-last BatchNorm is off by about
    # 1e-4 relative in the variance here (sequential sums); cascade sums stay near 1e-7.
    generator = torch.Generator().manual_seed(0)
    x = (0.5 * torch.randn(2, 4, 24, 21490, generator=generator) + 2.0).contiguous(memory_format=torch.channels_last)
    true_var, true_mean = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    mean, var = batch_statistics(x)
    assert ((var.double() - true_var).abs() / true_var).max().item() < 2e-6
    assert ((mean.double() - true_mean).abs() / true_var.sqrt()).max().item() < 2e-6


@pytest.mark.parametrize("momentum", [0.1, None])  # exponential, and the cumulative average when None
def test_channels_last_norm_selu_is_selu_of_batchnorm_with_its_running_statistics(momentum):
    import copy

    from plastispoof.models.aasist.cpu_training import norm_selu

    generator = torch.Generator().manual_seed(4)
    norm = nn.BatchNorm2d(6, momentum=momentum)
    _randomise_norm(norm, generator)
    twin = copy.deepcopy(norm)
    x = (3 * torch.randn(3, 6, 5, 40, generator=generator) + 1).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(3, 6, 5, 40, generator=generator)
    for _ in range(2):  # two steps: the running statistics' update rule, not just one value
        ours, plain = x.clone().requires_grad_(), x.contiguous().requires_grad_()
        out, expected = norm_selu(norm, ours), F.selu(twin(plain))
        out.backward(grad)
        expected.backward(grad)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.grad, plain.grad, rtol=1e-5, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(norm, name), getattr(twin, name), rtol=1e-6, atol=1e-7)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(norm, name).grad, getattr(twin, name).grad, rtol=1e-4, atol=1e-5)


def test_a_grown_or_evaluating_encoder_trains_on_the_plain_layers(monkeypatch):
    from plastispoof.models.aasist import cpu_training

    calls = []
    monkeypatch.setattr(cpu_training, "block_training", lambda block, x: calls.append(block))
    waveform = 0.2 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2))
    model = build_model("aasist-l").train()
    model.encoder[2][0].bn2.eval()  # running statistics instead of batch statistics: not this path's job
    model(waveform)
    model = build_model("aasist-l").train()
    model.encoder[0][0].conv1.register_forward_hook(lambda *args: None)  # a hook must see its layer run
    model(waveform)
    model = build_model("aasist-l").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast picks each layer's precision itself
        assert torch.isfinite(model(waveform)).all()
    assert calls == []


def test_a_gradient_for_the_waveform_takes_the_whole_map_path_and_is_the_same():
    torch.manual_seed(0)
    model = _with_random_norms(build_model("aasist-l"), seed=2).eval()
    grads = []
    for fast in (True, False):
        model.cpu_fast_paths = fast
        waveform = (0.2 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(3))).requires_grad_()
        model.score(waveform).sum().backward()
        grads.append(waveform.grad)
    model.cpu_fast_paths = True
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-4 * grads[1].abs().max().item())


def test_front_end_max_pool_is_max_pool2d_exactly_with_nan_and_ragged_edges():
    from plastispoof.models.aasist.cpu_inference import max_pool_3x3

    x = torch.randn(2, 70, 3 * 41 + 2, generator=torch.Generator().manual_seed(3)).abs()
    x[0, 4, 17] = float("nan")  # one window's NaN must reach its output, as max_pool2d propagates it
    expected = F.max_pool2d(x[:, None], 3)[:, 0]
    pooled = max_pool_3x3(x, torch.empty(2, 23, 41))
    assert torch.equal(pooled.isnan(), expected.isnan()) and pooled.isnan().sum() == 1
    assert torch.equal(pooled.nan_to_num(), expected.nan_to_num())


# --- bfloat16 scoring (plastispoof score --precision bfloat16) --------------------------------------------------

def test_bfloat16_autocast_runs_the_blocks_in_bfloat16_and_the_rest_in_float32(monkeypatch):
    from plastispoof.models.aasist import cpu_inference

    block_inputs, graph_inputs = [], []
    inner = cpu_inference.block_inference
    monkeypatch.setattr(cpu_inference, "block_inference",
                        lambda block, x: block_inputs.append(x.dtype) or inner(block, x))
    torch.manual_seed(0)
    model = _with_random_norms(build_model("aasist-l"), seed=4).eval()
    inner_graph = model.graph_logits
    monkeypatch.setattr(model, "graph_logits", lambda feature_map: graph_inputs.append(
        (feature_map.dtype, torch.is_autocast_enabled("cpu"))) or inner_graph(feature_map))
    waveform = 0.2 * torch.randn(2, SR, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        exact = model(waveform)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(waveform)
            model.cpu_fast_paths = False  # autocast's own choice, layer by layer, on the published layers
            plain = model(waveform).float()
    assert block_inputs == [torch.float32] * 12 + [torch.bfloat16] * 12  # 2 utterances x 6 blocks, each way
    assert graph_inputs[:2] == [(torch.float32, False), (torch.float32, False)]  # graph back-end in float32
    assert fast.dtype == torch.float32
    fast_error, plain_error = (fast - exact).abs().max().item(), (plain - exact).abs().max().item()
    assert 0 < fast_error < plain_error  # really bfloat16, and closer to float32 than plain autocast


def test_bfloat16_autocast_takes_the_plain_layers_for_float64_and_float16(monkeypatch):
    from plastispoof.models.aasist import cpu_inference

    calls = []
    monkeypatch.setattr(cpu_inference, "block_inference", lambda block, x: calls.append(block))
    model = build_model("aasist-l").eval()
    waveform = 0.2 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model.double()(waveform.double()).dtype == torch.float64
        with torch.autocast("cpu", dtype=torch.float16):
            assert torch.isfinite(model.float()(waveform)).all()
    assert calls == []


@needs_checkpoints
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_official_scores_in_bfloat16_stay_within_0_05_of_float32(name, tmp_path):
    from plastispoof.inference import Detector

    windows = np.stack([speech_like(seed=seed, peak=peak).numpy() for seed, peak in [(1, 0.45), (2, 0.05)]]
                       + [0.1 * np.random.default_rng(3).standard_normal(SAMPLES)]).astype(np.float32)
    float32, bfloat16 = (Detector.from_weights(name, OFFICIAL_DIR / CHECKPOINTS[name], device="cpu",
                                               precision=precision).score_batch(windows)
                         for precision in ("float32", "bfloat16"))
    assert 0 < np.abs(bfloat16 - float32).max() <= 0.05
