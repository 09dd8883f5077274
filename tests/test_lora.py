"""LoRA on wav2vec2: trainable counts (Table I), what trains, merge for export, replay from records."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from plastispoof.capacity.base import Transform, apply_transforms, build_strategy
from plastispoof.capacity.lora import LoraMergeTransform, LoraOptions, LoraTransform, merge_lora
from plastispoof.errors import InputError
from plastispoof.models.base import SpoofModel, build_model, count_parameters
from plastispoof.runs import load_state_strict, read_weights, save_weights

SAMPLES = 4000  # 0.25 s = 12 frames: more than the 10 that wav2vec2's training-time time masking spans


def tiny_wav2vec2() -> SpoofModel:
    return build_model("wav2vec2", size="small", num_layers=2)


def adapter_params(model: nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".lora_" in name)


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.ssl.state_dict().items() if ".lora_" not in k}


def train_steps(model: nn.Module, steps: int = 2) -> None:
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    model.train()
    for _ in range(steps):
        waveform = torch.randn(2, SAMPLES, generator=generator)
        loss = nn.functional.cross_entropy(model(waveform), torch.tensor([0, 1]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("size, hidden", [("base", 768), ("small", 256)])
def test_trainable_parameters_match_table1(size, hidden):
    # Shapes only: the meta device builds a 95 M-parameter model without allocating or initialising it.
    with torch.device("meta"):
        model = build_model("wav2vec2", size=size)
    total = count_parameters(model)
    LoraTransform().apply(model)
    layers = len(model.ssl.encoder.layers)
    per_projection = hidden * 8 + 8 * hidden  # A (r x in) + B (out x r), r = 8
    assert adapter_params(model) == layers * 2 * per_projection
    head = count_parameters(model.head)
    assert count_parameters(model, trainable_only=True) == adapter_params(model) + head
    assert count_parameters(model) == total + adapter_params(model)
    if size == "base":  # Table I: 0.29 M trainable on wav2vec2 base
        assert f"{adapter_params(model) / 1e6:.2f}" == "0.29"


def test_only_adapters_and_head_train_and_backbone_stays_identical():
    torch.manual_seed(0)
    model = LoraTransform().apply(tiny_wav2vec2(), torch.Generator().manual_seed(0))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.named_parameters() if ".lora_" in name or name.startswith("head.")}
    assert model.ssl.feature_extractor._requires_grad is False  # the CNN builds no graph
    before_backbone = backbone_state(model)
    before_adapters = {k: v.clone() for k, v in model.state_dict().items() if ".lora_B" in k}
    train_steps(model)
    after = model.ssl.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before_backbone.items())
    assert all(not torch.equal(model.state_dict()[k], v) for k, v in before_adapters.items())


def test_head_frozen_when_asked():
    model = LoraTransform(LoraOptions(train_head=False, r=4, target_modules=["k_proj"])).apply(tiny_wav2vec2())
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".k_proj.lora_" in name for name in trainable)
    assert sum(p.numel() for name, p in model.named_parameters() if p.requires_grad) == 2 * 2 * (256 * 4)


def test_merge_gives_plain_model_with_same_scores():
    torch.manual_seed(0)
    model = LoraTransform().apply(tiny_wav2vec2())
    train_steps(model)  # B != 0 now, so the adapters change the output
    model.eval()
    waveform = torch.randn(3, SAMPLES, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        adapted = model.score(waveform)
        merged_model = merge_lora(model)
        merged = merged_model.score(waveform)
    assert merged_model is model and type(merged_model).__name__ == "Wav2Vec2"
    assert not any("lora" in name or "base_layer" in name for name in merged_model.state_dict())
    assert not hasattr(merged_model, "peft_config")
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)
    fresh = tiny_wav2vec2()
    load_state_strict(fresh, merged_model.state_dict(), "merged")  # a plain model of the built class
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval().score(waveform), merged)


def test_replayed_records_rebuild_the_saved_model(tmp_path):
    torch.manual_seed(0)
    options = LoraOptions(r=4, alpha=8, target_modules=["q_proj", "v_proj", "out_proj"])
    model = LoraTransform(options).apply(tiny_wav2vec2())
    train_steps(model, steps=1)
    save_weights(model.state_dict(), tmp_path / "model.safetensors")
    records = json.loads(json.dumps([LoraTransform(options).record(), LoraMergeTransform().record()]))

    rebuilt = apply_transforms(tiny_wav2vec2(), records[:1])
    load_state_strict(rebuilt, read_weights(tmp_path / "model.safetensors"), "model.safetensors")
    waveform = torch.randn(2, SAMPLES, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.eval().score(waveform)
        torch.testing.assert_close(rebuilt.eval().score(waveform), expected)
        exported = Transform.from_record(records[1]).apply(rebuilt)
        torch.testing.assert_close(exported.score(waveform), expected, atol=1e-4, rtol=1e-4)


def test_merge_record_is_its_kind_alone_and_replays():
    record = LoraMergeTransform().record()
    assert record == {"kind": "lora-merge"}  # as runs recorded it before the option-less base
    assert type(Transform.from_record(record)) is LoraMergeTransform

def test_strategy_stages_and_option_errors():
    stages = build_strategy("lora", {"r": 4, "baseline_run": "runs/scratch", "merge": True}).stages(3)
    assert [(s.name, s.epochs, s.init_from) for s in stages] == [("lora", 3, "runs/scratch"), ("merge", 0, None)]
    assert stages[0].transforms[0].record()["r"] == 4
    assert isinstance(stages[1].transforms[0], LoraMergeTransform)
    assert len(build_strategy("lora").stages(2)) == 1
    with pytest.raises(InputError, match="rank"):
        build_strategy("lora", {"rank": 4})
    with pytest.raises(InputError, match="'r'"):
        build_strategy("lora", {"r": 0})


def test_applies_only_to_models_with_an_ssl_encoder():
    from plastispoof.registry import STRATEGIES

    for name in ("lora", "molex"):
        assert STRATEGIES.get_or_fail(name).applies_to(tiny_wav2vec2())
        assert not STRATEGIES.get_or_fail(name).applies_to(build_model("grnn"))


def test_bad_targets_are_input_errors():
    with pytest.raises(InputError, match="qproj.*named: .*q_proj"):
        LoraTransform(LoraOptions(target_modules=["qproj"])).apply(tiny_wav2vec2())
    with pytest.raises(InputError, match="no transformers SSL encoder"):
        LoraTransform().apply(SpoofModel())
    with pytest.raises(InputError, match="no LoRA adapters"):
        merge_lora(tiny_wav2vec2())
    with pytest.raises(InputError, match="already has LoRA adapters"):
        LoraTransform().apply(LoraTransform().apply(tiny_wav2vec2()))


def test_wavlm_attention_projections_are_refused():
    # WavLM's attention passes q/k/v/out weights straight to F.multi_head_attention_forward, which would skip
    # an adapter silently; its feed-forward layers are called as modules and can be adapted.
    from transformers import WavLMConfig, WavLMModel

    class TinyWavLM(SpoofModel):
        def __init__(self):
            super().__init__()
            self.ssl = WavLMModel(WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 3),
                                              conv_stride=(5, 2), num_conv_pos_embeddings=8,
                                              num_conv_pos_embedding_groups=2))

    with pytest.raises(InputError, match="WavLMAttention reads the weights of [qv]_proj directly"):
        LoraTransform().apply(TinyWavLM())
    model = LoraTransform(LoraOptions(target_modules=["intermediate_dense"])).apply(TinyWavLM())
    assert adapter_params(model) == 16 * 8 + 8 * 32
