"""SSL front-ends: kinds, sizes, aggregation modes, freezing, pretrained loading, and the on-disk feature cache."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from tiny_run import write_tiny_corpus
from torch import nn
from torch.utils.data import DataLoader

from plastispoof.data.dataset import TrialDataset
from plastispoof.data.feature_cache import CachedFeatureDataset, FeatureCache
from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.models.base import build_model
from plastispoof.models.ssl import SSLFrontend


def waves(batch: int = 2, samples: int = 8000, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def tiny(**options) -> SSLFrontend:
    torch.manual_seed(0)
    return SSLFrontend(**{"size": "tiny", **options})


def hidden_states(frontend: SSLFrontend, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    output = frontend.ssl(frontend.normalise(x), output_hidden_states=True)
    return output.hidden_states, output.last_hidden_state


@pytest.mark.parametrize("kind", ["wav2vec2", "wavlm", "hubert"])
def test_each_kind_gives_channels_first_features_of_the_encoder_frame_count(kind):
    frontend = tiny(kind=kind).eval()
    x = waves()
    with torch.no_grad():
        out = frontend(x)
        _, last = hidden_states(frontend, x)
    frames = int(frontend.ssl._get_feat_extract_output_lengths(x.shape[1]))
    assert out.shape == (2, 64, frames) and frontend.output_dim == 64
    assert torch.allclose(out, last.transpose(1, 2))  # "last" = the encoder's last hidden state


def test_large_preset_is_the_xls_r_300m_shape():
    with torch.device("meta"):
        frontend = SSLFrontend(size="xls-r-300m")
    config = frontend.ssl.config
    assert (config.hidden_size, config.num_hidden_layers, config.do_stable_layer_norm) == (1024, 24, True)
    assert 310e6 < sum(p.numel() for p in frontend.parameters()) < 320e6  # XLS-R 300M: 315 M without heads


def test_weighted_sum_uses_softmax_weights_over_all_hidden_states():
    frontend = tiny(aggregation="weighted").eval()
    with torch.no_grad():
        frontend.mixer.logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
        x = waves()
        out = frontend(x)
        states, _ = hidden_states(frontend, x)
        weights = frontend.mixer.weights(torch.stack(states, dim=1))
    assert len(states) == 3 and weights.shape == (2, 3)
    assert torch.allclose(weights.sum(dim=1), torch.ones(2)) and (weights > 0).all()
    assert torch.allclose(weights[0], weights[1])  # shared by every utterance
    expected = sum(w * s for w, s in zip(weights[0], states)).transpose(1, 2)
    assert torch.allclose(out, expected, atol=1e-5)


def test_weighted_sum_starts_uniform():
    frontend = tiny(aggregation="weighted", num_layers=3)
    assert torch.allclose(frontend.mixer.weights(torch.zeros(1, 4, 2, 64)), torch.full((1, 4), 0.25))


def test_layer_attention_gates_each_layer_per_utterance_from_its_average():
    frontend = tiny(aggregation="attention", num_layers=5).eval()  # 6 hidden states, MLP 6 -> 2 -> 6
    mixer = frontend.mixer
    with torch.no_grad():
        mixer.squeeze.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1.0]]))
        means = torch.tensor([[1.0, 2, 3, 4, 5, 6], [6.0, 5, 4, 3, 2, 1]])
        states = means[:, :, None, None] + torch.randn(2, 6, 4, 64) * 0.01
        states -= states.mean(dim=(2, 3), keepdim=True) - means[:, :, None, None]  # exact layer averages
        weights = mixer.weights(states)
        expected = torch.sigmoid(mixer.excite(torch.relu(mixer.squeeze(means))))
    assert weights.shape == (2, 6) and torch.allclose(weights, expected, atol=1e-5)
    assert ((weights > 0) & (weights < 1)).all() and not torch.allclose(weights[0], weights[1])
    assert torch.allclose(mixer(states), torch.einsum("bl,bltd->btd", weights, states), atol=1e-5)


def test_attention_aggregation_sums_the_gated_hidden_states():
    frontend = tiny(aggregation="attention").eval()
    x = waves()
    with torch.no_grad():
        states, _ = hidden_states(frontend, x)
        stacked = torch.stack(states, dim=1)
        expected = torch.einsum("bl,bltd->bdt", frontend.mixer.weights(stacked), stacked)
        assert torch.allclose(frontend(x), expected, atol=1e-5)


def test_frozen_encoder_gets_no_gradients_and_stays_in_eval_mode():
    frontend = tiny(aggregation="attention", freeze=True)
    head = nn.Linear(64, 2)
    frontend.train()
    assert not frontend.ssl.training and frontend.mixer.training
    head(frontend(waves(4)).mean(dim=-1)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in frontend.ssl.parameters())
    assert all(p.grad is not None for p in frontend.mixer.parameters())


def test_unfrozen_encoder_trains_except_its_cnn():
    frontend = tiny().train()
    frontend(waves(2)).sum().backward()
    cnn = list(frontend.ssl.feature_extractor.parameters())
    assert all(not p.requires_grad and p.grad is None for p in cnn)
    transformer = [p for n, p in frontend.ssl.encoder.named_parameters() if p.requires_grad]
    assert transformer and all(p.grad is not None for p in transformer)


def test_pretrained_weights_load_from_a_local_directory(tmp_path):
    source = tiny(kind="wavlm")
    source.ssl.save_pretrained(tmp_path)
    loaded = SSLFrontend(kind="wavlm", size="base", pretrained=str(tmp_path), num_layers=1)
    assert loaded.output_dim == 64 and len(loaded.ssl.encoder.layers) == 1  # the checkpoint's config wins
    state = loaded.ssl.state_dict()
    for key, value in source.ssl.state_dict().items():
        if key in state:
            assert torch.equal(state[key], value), key
    with pytest.raises(InputError, match="cannot load"):
        SSLFrontend(size="tiny", pretrained=str(tmp_path / "missing"))


@pytest.mark.parametrize("options, message", [
    ({"kind": "whisper"}, "kind"), ({"size": "huge"}, "size"), ({"aggregation": "max"}, "aggregation"),
    ({"num_layers": 0}, "num_layers"), ({"overrides": {"hidden_size": 65}}, "override"),
])
def test_bad_options_are_input_errors(options, message):
    with pytest.raises(InputError, match=message):
        SSLFrontend(**{"size": "tiny", **options})


def test_too_short_or_misshaped_waveforms_are_input_errors():
    frontend = tiny().eval()
    assert frontend.min_samples() == 400  # 25 ms: one frame of the standard CNN
    with pytest.raises(InputError, match="at least 400"):
        frontend(waves(samples=399))
    with pytest.raises(InputError, match="batch, samples"):
        frontend(torch.zeros(2, 1, 8000))
    with pytest.raises(InputError, match="another front-end"):
        frontend.aggregate(torch.zeros(2, 3, 10, 64))


# ------------------------------------------------------------------------------------------- feature cache


def test_feature_cache_round_trip_with_unsafe_ids(tmp_path):
    cache = FeatureCache(tmp_path, key="k1")
    tensor = torch.randn(1, 5, 64)
    for utt in ("LA_T_0001", "training/real/a b.wav", "../escape"):
        assert cache.get(utt) is None
        cache.put(utt, tensor)
        assert torch.equal(cache.get(utt), tensor) and utt in cache
        assert cache.path(utt).parent == tmp_path / "k1"
    assert cache.path("a/b") != cache.path("a_b")
    assert not [p for p in (tmp_path / "k1").iterdir() if p.name.endswith(".tmp")]


def test_cache_key_follows_weights_states_and_crop():
    a, b = tiny(freeze=True), tiny(freeze=True)
    assert a.cache_key(num_samples=8000) == b.cache_key(num_samples=8000)
    assert a.cache_key(num_samples=8000) != a.cache_key(num_samples=16000)
    assert a.cache_key() != tiny(freeze=True, aggregation="weighted").cache_key()
    with torch.no_grad():
        b.ssl.encoder.layers[0].feed_forward.output_dense.weight.add_(1e-3)
    assert a.cache_key() != b.cache_key()


@pytest.fixture
def dev_dataset(tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", counts={"dev": (3, 3)}, seconds=0.5)
    return TrialDataset(read_dataset("asv19-la", corpus, "dev"), num_samples=4000, train=False)


def test_second_epoch_reads_the_cache_and_gives_identical_results(tmp_path, dev_dataset, monkeypatch):
    model = build_model("ssl-nes2net", frontend={"size": "tiny", "freeze": True, "aggregation": "weighted"},
                        backend={"dilation": 1}).eval()
    cached = CachedFeatureDataset(dev_dataset, model.frontend, tmp_path / "cache")
    first = [cached[i] for i in range(len(cached))]
    assert len(list(cached.cache.root.glob("*.safetensors"))) == len(dev_dataset)

    def fail(_):
        raise AssertionError("the second epoch must not run the encoder")

    monkeypatch.setattr(model.frontend, "encode", fail)
    second = [cached[i] for i in range(len(cached))]
    assert all(torch.equal(a[0], b[0]) and a[1:] == b[1:] for a, b in zip(first, second))
    monkeypatch.undo()

    states, targets, indices = next(iter(DataLoader(cached, batch_size=6)))
    waveforms = torch.stack([dev_dataset[i][0] for i in indices.tolist()])
    with torch.no_grad():
        assert torch.allclose(model(states), model(waveforms), atol=1e-3)  # the cache stores float16
    assert targets.tolist() == [dev_dataset[i][1] for i in indices.tolist()]


def test_fill_encodes_only_missing_utterances(tmp_path, dev_dataset):
    frontend = tiny(freeze=True)
    cached = CachedFeatureDataset(dev_dataset, frontend, tmp_path, dtype="float32")
    _ = cached[0]
    assert cached.fill(batch_size=4) == len(dev_dataset) - 1
    assert cached.fill() == 0
    assert torch.allclose(cached[0][0], frontend.encode(dev_dataset[0][0][None])[0], atol=1e-5)


def test_cache_refuses_random_crops_and_trained_encoders(tmp_path, dev_dataset):
    with pytest.raises(InputError, match="frozen"):
        CachedFeatureDataset(dev_dataset, tiny(), tmp_path)
    training = TrialDataset(dev_dataset.trials, num_samples=4000, train=True)
    with pytest.raises(InputError, match="train=False"):
        CachedFeatureDataset(training, tiny(freeze=True), tmp_path)


@pytest.mark.slow
def test_training_reads_frozen_features_from_the_cache(tmp_path, tiny_corpus):
    """With ``data.feature_cache`` the trainer encodes each utterance once and trains the back-end on the cache."""
    from plastispoof.config import validate
    from plastispoof.training import train

    cache = tmp_path / "cache"
    cfg = validate({"name": "cached", "output_dir": str(tmp_path / "runs"),
                    "data": {"dataset": "synthetic", "root": str(tiny_corpus), "num_samples": 8000, "batch_size": 8,
                             "feature_cache": str(cache)},
                    "model": {"name": "ssl-linear", "args": {"frontend": {"size": "tiny", "freeze": True}}},
                    "train": {"epochs": 2, "max_steps_per_epoch": 2, "lr": 1e-2}})
    run = train(cfg)
    cached = [p for p in cache.rglob("*") if p.is_file() and p.suffix == ".safetensors"]
    assert len(cached) >= 8  # at least the utterances of the batches seen
    assert (run / "model.safetensors").exists()
    with pytest.raises(InputError, match="SSL front-end"):
        plain = cfg.model.model_copy(update={"name": "grnn", "args": {}})
        train(cfg.model_copy(update={"name": "no-ssl", "model": plain}))



def test_the_cache_stores_float16_reports_its_size_and_refuses_a_disk_too_small(tmp_path, dev_dataset, monkeypatch):
    from plastispoof.data import feature_cache

    frontend = tiny(freeze=True, aggregation="weighted")  # a learnt layer mix reads every hidden state
    lines: list[str] = []
    cached = CachedFeatureDataset(dev_dataset, frontend, tmp_path / "cache", report=lines.append)
    plan = cached.plan()
    encoded = frontend.encode(dev_dataset[0][0][None])[0]
    assert (plan.states, plan.frames, plan.dim) == tuple(encoded.shape) == (3, 12, 64)
    assert plan.bytes_per_utterance == 3 * 12 * 64 * 2 + 128 and plan.missing == len(dev_dataset)
    assert lines == [plan.line()] and "3 state(s) x 12 frames x 64 float16 = 4.6 KiB an utterance" in lines[0]
    cached.fill()
    stored = load_file(str(cached.cache.path(dev_dataset.trials[0].utt_id)))["features"]
    assert stored.dtype == torch.float16 and torch.equal(cached[0][0], stored.float())
    assert stored.numel() * 2 + 128 >= cached.cache.path(dev_dataset.trials[0].utt_id).stat().st_size - 64
    assert cached.plan().missing == 0  # nothing left to encode, nothing more needed
    # A "last" front-end keeps only its last hidden state.
    last = CachedFeatureDataset(dev_dataset, tiny(freeze=True), tmp_path / "c2", report=lines.append)
    assert last.plan().states == 1

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(feature_cache.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    fresh = CachedFeatureDataset(dev_dataset, frontend, tmp_path / "c3", report=lines.append)
    with pytest.raises(InputError, match=r"the feature cache in .*c3 needs 27\.8 KiB for 6 utterances \(4\.6 KiB "
                                         r"each\) but its disk has 1000 B free"):
        fresh.fill()
    assert not list(fresh.cache.root.glob("*.safetensors"))  # refused before encoding anything
