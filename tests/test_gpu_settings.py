"""The GPU settings of the recipes, on CPU where they can run: the autocast choice (bfloat16 without loss
scaling, float16 with it), a training step under bfloat16 autocast, channels_last training, and every real-corpus
recipe stating its GPU settings, epoch time and paper EER."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_run import tiny_config, write_tiny_corpus

from plastispoof.config import TrainConfig, load_config
from plastispoof.models.base import build_model
from plastispoof.training import train
from plastispoof.training.optim import Optimisation, autocast_settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(p for corpus in ("asv19-la", "asv19-pa", "asv21-la", "asv21-df", "in-the-wild", "for-norm")
                 for p in (CONFIGS / corpus).glob("*.yaml"))


def small_resnet():
    return build_model("resnet18", width=4, n_mels=16, n_fft=256, hop_length=128)


def test_autocast_choice_per_device_and_dtype():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert autocast_settings(TrainConfig(amp_dtype="bfloat16"), cuda) == (True, torch.bfloat16, False)
    assert autocast_settings(TrainConfig(amp_dtype="float16"), cuda) == (True, torch.float16, True)
    assert autocast_settings(TrainConfig(amp=False, amp_dtype="bfloat16"), cuda)[0] is False
    assert autocast_settings(TrainConfig(amp_dtype="bfloat16"), cpu)[0] is False


def test_a_step_under_bfloat16_autocast_runs_the_convolutions_in_bfloat16():
    torch.manual_seed(0)
    model = small_resnet()
    optimisation = Optimisation(TrainConfig(amp_dtype="bfloat16", lr=1e-3), torch.device("cpu"))
    optimisation.build(model, 4000, "test")
    optimisation.amp = True  # the CUDA path, run by CPU autocast (same code, CPU kernels)
    seen: list[torch.dtype] = []
    model.conv1.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    before = model.conv1.weight.detach().clone()
    loss, _, _ = optimisation.step(torch.randn(4, 4000), torch.tensor([0, 1, 0, 1]), None)
    assert seen == [torch.bfloat16] and torch.isfinite(torch.tensor(loss))
    assert not optimisation.scaler.is_enabled() and model.conv1.weight.dtype == torch.float32
    assert not torch.equal(before, model.conv1.weight)  # the float32 master weights were updated


def test_channels_last_training_gives_the_same_run_within_rounding(tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", {"train": (6, 6), "dev": (4, 4)}, seconds=0.25)
    runs = {}
    for layout in (False, True):
        cfg = tiny_config(tmp_path / "runs", corpus, name=f"cl-{layout}",
                          model={"name": "resnet18", "args": {"width": 4, "n_mels": 16, "n_fft": 256,
                                                              "hop_length": 128}},
                          data={"num_samples": 4000}, train={"epochs": 1, "channels_last": layout,
                                                             "deterministic": False})
        runs[layout] = load_file(train(cfg) / "model.safetensors")
    assert runs[True].keys() == runs[False].keys()
    assert all(torch.allclose(runs[True][k].float(), runs[False][k].float(), atol=1e-4) for k in runs[True])
    conv = small_resnet().to(memory_format=torch.channels_last).conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_real_corpus_recipe_states_its_gpu_settings(recipe):
    text = recipe.read_text()
    for stated in ("expected epoch", "paper EER"):
        assert stated in text, f"{recipe} does not state its {stated}"
    cfg = load_config(recipe)
    assert cfg.train.amp and cfg.train.amp_dtype == "bfloat16"
    assert cfg.data.num_workers >= 4 and cfg.data.batch_size >= 12
    assert cfg.train.channels_last == (cfg.model.name.startswith("resnet"))  # where it helps: 2-D CNNs
    corpus = recipe.parent.name
    if corpus in ("asv21-la", "asv21-df", "in-the-wild"):  # evaluation-only corpora: trained on 2019 LA
        assert cfg.data.dataset == "asv19-la" and f"evaluate runs/{cfg.name} --dataset {corpus}" in text
    else:
        assert yaml.safe_load(text)["data"]["dataset"] == corpus == cfg.data.dataset


def test_there_is_a_recipe_for_each_real_corpus():
    assert {p.parent.name for p in RECIPES} == {"asv19-la", "asv19-pa", "asv21-la", "asv21-df", "in-the-wild",
                                                "for-norm"}
