"""`plastispoof import`: published weights become a run directory, and every strategy can start from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import one_line_error, run_cli
from needs import skip_or_fail, unless
from tiny_run import tiny_config, write_tiny_corpus

from plastispoof import runs
from plastispoof.errors import InputError
from plastispoof.inference import Detector
from plastispoof.models.aasist import read_state_dict
from plastispoof.models.base import build_model
from plastispoof.pretrained import import_checkpoint
from plastispoof.training import train

OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared/data/aasist"
AASIST_L = OFFICIAL_DIR / "AASIST-L.pth"
needs_checkpoints = unless(AASIST_L.is_file(), f"official checkpoints not at {OFFICIAL_DIR}")

# Tiny SSL encoder: the same shape as the "tiny" front-end size, saved as a Hugging Face folder.
TINY_W2V2 = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "conv_dim": (16,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), seconds=0.4,
                             counts={"train": (6, 6), "dev": (4, 4), "eval": (3, 3)})


@pytest.fixture(scope="module")
def imported_aasist_l(tmp_path_factory) -> Path:
    if not AASIST_L.is_file():
        skip_or_fail(f"official checkpoints not at {OFFICIAL_DIR}")
    return import_checkpoint("aasist-l", AASIST_L, tmp_path_factory.mktemp("runs") / "aasist-l-official")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("hf") / "tiny-wav2vec2"
    Wav2Vec2Model(Wav2Vec2Config(**TINY_W2V2)).save_pretrained(folder)
    return folder


# ------------------------------------------------------------------------------------------------ import


@needs_checkpoints
def test_imported_run_holds_every_official_tensor_and_names_its_source(imported_aasist_l):
    model, meta = runs.load_run_model(imported_aasist_l)  # strict: every name and shape
    official = read_state_dict(AASIST_L)
    state = model.state_dict()
    assert set(official) == set(state)
    assert all(torch.equal(official[k], state[k]) for k in official)
    card = (imported_aasist_l / "card.json").read_text()
    assert str(AASIST_L.resolve()) in card and meta["imported_from"]["kind"] == "official-checkpoint"
    assert meta["finished"] and meta["transforms"] == [] and meta["input"]["num_samples"] == 64600


@needs_checkpoints
def test_imported_run_scores_exactly_as_the_foreign_weights(imported_aasist_l, tmp_path):
    rng = np.random.default_rng(0)
    import soundfile as sf

    paths = []
    for i, seconds in enumerate((0.7, 4.5)):  # one short (repeat-padded) and one scored on two windows
        path = tmp_path / f"clip{i}.flac"
        sf.write(path, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
        paths.append(path)
    from_run = Detector.from_run(imported_aasist_l).score_paths(paths)
    from_weights = Detector.from_weights("aasist-l", AASIST_L).score_paths(paths)
    assert [r.score for r in from_run] == [r.score for r in from_weights]
    assert all(r.score is not None for r in from_run)


@needs_checkpoints
def test_weights_of_another_architecture_are_refused_naming_a_key(tmp_path, capsys):
    one_line_error(*run_cli(capsys, "import", "aasist", "--weights", AASIST_L, "--out", tmp_path / "x"),
                   "does not fit model 'aasist'", "fits model 'aasist-l'")
    assert not (tmp_path / "x").exists()
    with pytest.raises(InputError, match=r"does not fit model 'aasist'.*pos_S.*fits model 'aasist-l'"):
        import_checkpoint("aasist", AASIST_L, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_bad_sources_are_one_line_input_errors(tmp_path, hf_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no config.json"):
        import_checkpoint("ssl-linear", empty, tmp_path / "a")
    with pytest.raises(InputError, match="weights not found"):
        import_checkpoint("aasist", tmp_path / "nothing.pth", tmp_path / "b")
    with pytest.raises(InputError, match="unknown model 'no-such-model'"):
        import_checkpoint("no-such-model", hf_folder, tmp_path / "c")
    with pytest.raises(InputError, match="has no SSL encoder"):
        import_checkpoint("resnet18", hf_folder, tmp_path / "d")
    pth = tmp_path / "x.pth"
    torch.save({"w": torch.zeros(2)}, pth)
    with pytest.raises(InputError, match="a .pth state_dict imports into the official models"):
        import_checkpoint("ssl-linear", pth, tmp_path / "e")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        import_checkpoint("ssl-linear", hf_folder, occupied)
    assert (occupied / "keep.txt").read_text() == "mine"


def test_hugging_face_encoder_lands_in_the_ssl_model_and_the_run_rebuilds_without_the_folder(tmp_path, hf_folder):
    from transformers import Wav2Vec2Model

    folder = tmp_path / "moved-away"
    shutil.copytree(hf_folder, folder)
    run = import_checkpoint("ssl-linear", folder, tmp_path / "ssl-imported",
                            overrides=["model.args.frontend.aggregation=weighted"])
    reference = Wav2Vec2Model.from_pretrained(folder).state_dict()
    shutil.rmtree(folder)  # the run must not need its source any more
    model, meta = runs.load_run_model(run)
    assert meta["model"]["args"]["frontend"]["pretrained"] is None
    assert meta["model"]["args"]["frontend"]["aggregation"] == "weighted"
    encoder = model.frontend.ssl.state_dict()
    assert set(reference) == set(encoder) and all(torch.equal(reference[k], encoder[k]) for k in reference)


def test_wav2vec2_model_imports_a_folder_and_rebuilds_from_its_stored_architecture(tmp_path, hf_folder):
    run = import_checkpoint("wav2vec2", hf_folder, tmp_path / "w2v")
    model, meta = runs.load_run_model(run)
    assert meta["model"]["args"]["architecture"]["hidden_size"] == TINY_W2V2["hidden_size"]
    assert model.head.in_features == TINY_W2V2["hidden_size"]


# ------------------------------------------------------------------------------------ strategies from an import


def _train_from(base: Path, corpus: Path, out: Path, model: str, strategy: str, args: dict, num_samples: int,
                model_args: dict | None = None) -> Path:
    cfg = tiny_config(out, corpus, name=f"{strategy}-run", model={"name": model, "args": model_args or {}},
                      strategy={"name": strategy, "args": {"baseline_run": str(base), **args}},
                      data={"num_samples": num_samples, "batch_size": 4, "eval_batch_size": 8},
                      train={"epochs": 1, "max_steps_per_epoch": 1, "lr": 1e-3, "warmup_steps": 0})
    return train(cfg)


def _changed(before: dict, after: dict, key: str) -> bool:
    return not torch.equal(before[key], after[key])


@needs_checkpoints
def test_finetune_from_an_import_keeps_frozen_parts_and_trains_the_rest(imported_aasist_l, corpus, tmp_path):
    run = _train_from(imported_aasist_l, corpus, tmp_path, "aasist-l", "finetune",
                      {"freeze": ["encoder", "first_bn"], "freeze_norm_statistics": True}, 4800)
    before = runs.read_weights(imported_aasist_l / runs.MODEL)
    after = runs.read_weights(run / runs.MODEL)
    encoder = [k for k in before if k.startswith("encoder.")]
    assert all(torch.equal(before[k], after[k]) for k in encoder)  # weights and batch-norm statistics
    assert _changed(before, after, "out_layer.weight")
    meta = runs.read_meta(run)
    assert 0 < meta["trainable_params"] < meta["params"]


@needs_checkpoints
@pytest.mark.parametrize("strategy", ["dropin-frozen", "dropin-unfrozen", "plasticity"])
def test_capacity_strategies_start_from_the_imported_weights(imported_aasist_l, corpus, tmp_path, strategy):
    args = {"sites": ["encoder.5"], "count": 4}
    if strategy == "plasticity":
        args.update(epochs_grow=1, epochs_prune=1)
    run = _train_from(imported_aasist_l, corpus, tmp_path, "aasist-l", strategy, args, 4800)
    meta = runs.read_meta(run)
    assert meta["transforms"][0]["kind"] == "dropin" and meta["transforms"][0]["sites"] == [["encoder.5", 4]]
    before = runs.read_weights(imported_aasist_l / runs.MODEL)
    after = runs.read_weights(run / runs.MODEL)
    if strategy == "dropin-frozen":
        # the original filters of the grown block are the imported ones, untouched
        assert torch.equal(after["encoder.5.0.conv1.base.weight"], before["encoder.5.0.conv1.weight"])
        assert torch.equal(after["encoder.0.0.conv2.weight"], before["encoder.0.0.conv2.weight"])
    elif strategy == "plasticity":  # pruned back to the published architecture, with trained weights
        assert set(after) == set(before)
        assert _changed(before, after, "out_layer.weight")
    else:
        assert _changed(before, after, "encoder.0.0.conv2.weight")
    model, _ = runs.load_run_model(run)  # and it rebuilds


@pytest.mark.parametrize("strategy,args", [("lora", {"r": 2}), ("molex", {"num_experts": 2, "rank": 2})])
def test_adapter_strategies_start_from_an_imported_ssl_encoder(hf_folder, corpus, tmp_path, strategy, args):
    base = import_checkpoint("ssl-linear", hf_folder, tmp_path / "ssl-base")
    # As a user writes it: the model built from the same folder, the weights from the imported run.
    model_args = {"frontend": {"kind": "wav2vec2", "pretrained": str(hf_folder)}}
    run = _train_from(base, corpus, tmp_path, "ssl-linear", strategy, args, 6400, model_args)
    assert runs.read_meta(run)["model"]["args"]["frontend"]["pretrained"] is None  # the run stands alone
    before = runs.read_weights(base / runs.MODEL)
    after = runs.read_weights(run / runs.MODEL)
    name = "frontend.ssl.encoder.layers.0.attention.q_proj"
    base_key = next(k for k in after if k in (f"{name}.base_layer.weight", f"{name}.base.weight"))
    assert torch.equal(after[base_key], before[f"{name}.weight"])  # the imported encoder, frozen
    assert any("lora" in k or "expert" in k for k in after)


@pytest.mark.parametrize("name", ["ssl-nes2net", "ssl-nes2net-x", "ssl-aasist", "ssl-linear"])
def test_every_ssl_back_end_reads_features_of_a_hugging_face_folder(hf_folder, name):
    from transformers import Wav2Vec2Model

    # 32-dimensional features: Nes2Net's 8 groups of 4 channels split in 2 inside (its default 8 needs 64 channels)
    backend = {"scale": 2} if name.startswith("ssl-nes2net") else {}
    model = build_model(name, frontend={"kind": "wav2vec2", "pretrained": str(hf_folder), "freeze": True},
                        backend=backend).eval()
    reference = Wav2Vec2Model.from_pretrained(hf_folder).state_dict()
    encoder = model.frontend.ssl.state_dict()
    assert set(reference) == set(encoder) and all(torch.equal(reference[k], encoder[k]) for k in reference)
    assert model.backend.input_dim == TINY_W2V2["hidden_size"]  # the folder's width reaches the back-end
    with torch.no_grad():
        logits = model(torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
