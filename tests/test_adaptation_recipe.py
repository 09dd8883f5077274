"""`reproduce adaptation`: LoRA, MoLEx, MoLEx + an added expert and fine-tuning adapt one detector to new attacks;
learning and forgetting are measured on held-out speakers."""

from __future__ import annotations

import json

import pytest
import torch

from plastispoof.analysis.adaptation import eer_on, reproduce_adaptation
from plastispoof.capacity.molex import molex_layers
from plastispoof.data.adaptation import write_adaptation_split
from plastispoof.data.protocols import read_dataset
from plastispoof.data.synthetic import SEEN_ATTACKS, write_corpus
from plastispoof.errors import InputError
from plastispoof.runs import load_run_model

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}
SMALL = ["data.num_samples=8000", "data.batch_size=8", "data.eval_batch_size=16"]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    corpus = write_corpus(tmp_path_factory.mktemp("synthetic"), profile="tiny", seed=3)
    write_adaptation_split(corpus, fraction=0.5, seed=1)
    out = tmp_path_factory.mktemp("adaptation")
    table = reproduce_adaptation(corpus, out, seeds=(1,), epochs=1, overrides=SMALL,
                                 base_overrides=[f"model.args.architecture={json.dumps(TINY)}", "train.epochs=1",
                                                 *SMALL])
    return corpus, out, table


def test_every_system_adapts_the_same_base_and_reports_learning_and_forgetting(comparison):
    corpus, out, table = comparison
    summary = json.loads((out / "adaptation.json").read_text())
    rows = {row["system"]: row for row in summary["rows"]}
    assert list(rows) == ["none", "lora", "molex", "molex-add-expert", "finetune"]
    base, _ = load_run_model(summary["base"])
    total = sum(p.numel() for p in base.parameters())
    assert rows["none"]["trainable_params"] == 0 and rows["finetune"]["trainable_params"] == total
    assert 0 < rows["lora"]["trainable_params"] < total and 0 < rows["molex"]["trainable_params"] < total
    added_meta = json.loads((out / "molex-add-expert-s1" / "meta.json").read_text())
    assert added_meta["strategy"]["args"]["baseline_run"] == str(out / "seen-molex")  # one start for every seed
    added, _ = load_run_model(rows["molex-add-expert"]["runs"][0])
    assert all(layer.num_experts == 5 for _, layer in molex_layers(added))  # 4 from the seen-attack run, + 1
    for row in rows.values():
        assert 0 <= row["learning"] <= 100 and 0 <= row["forgetting"] <= 100
    assert rows["molex"]["experts"] and (out / "molex-s1" / "reports" / "experts-synthetic-eval.png").is_file()
    assert "molex-add-expert" in table and "seen_molex" in table


def test_learning_and_forgetting_are_scored_on_new_and_old_attacks_of_held_out_speakers(comparison):
    corpus, out, _ = comparison
    run = out / "lora-s1"
    split = json.loads((corpus / "adaptation" / "split.json").read_text())
    forgetting = json.loads((run / "scores" / "adaptation-forgetting.json").read_text())
    old = read_dataset("synthetic", corpus / "adaptation" / "old-attacks", "eval")
    assert forgetting["trials"] == len(old) == sum(split["counts"]["forgetting_eval"].values())
    assert {t.attack for t in old if t.label == "spoof"} <= set(SEEN_ATTACKS)
    assert forgetting["eer_percent"] == eer_on(run, corpus / "adaptation" / "old-attacks", "forgetting")
    meta = json.loads((run / "meta.json").read_text())
    assert meta["strategy"]["args"]["baseline_run"].endswith("base-wav2vec2-small")
    assert meta["stages"][0]["best_epoch"] == meta["stages"][0]["epochs"]  # select: last, a fixed budget
    model, _ = load_run_model(run)
    base, _ = load_run_model(out / "base-wav2vec2-small")
    name = "ssl.encoder.layers.0.attention.k_proj.weight"  # not a LoRA target: left as the base had it
    assert torch.equal(dict(model.named_parameters())[name], dict(base.named_parameters())[name])


def test_a_corpus_without_the_split_is_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match="--adaptation 0.25"):
        reproduce_adaptation(tmp_path)
    with pytest.raises(InputError, match="known: none, lora"):
        reproduce_adaptation(tmp_path, systems=["nope"])
