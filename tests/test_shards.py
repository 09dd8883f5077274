"""WebDataset shards: prepare --shards writes them, training reads them split per rank and per worker in a
seeded order, with the crops of the file loader; shards of other trials or too few shards are refused."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_run import tiny_config, write_tiny_corpus
from torch.utils.data import DataLoader

from plastispoof.data.dataset import TrialDataset
from plastispoof.data.prepare import prepare_corpus
from plastispoof.data.protocols import read_dataset
from plastispoof.data.shards import ShardTrainingSet, read_index
from plastispoof.errors import InputError
from plastispoof.runs import read_jsonl
from plastispoof.training import train

COUNTS = {"train": (12, 11), "dev": (8, 8), "eval": (2, 2)}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    corpus = write_tiny_corpus(tmp / "corpus", COUNTS, seconds=0.15)
    check = prepare_corpus("asv19-la", corpus, expected={"train": 23, "dev": 16, "eval": 4}, shards=tmp / "shards",
                           shard_size=5, show_progress=False)
    assert check.shard_index is not None
    return corpus, tmp / "shards"


def items(dataset: ShardTrainingSet) -> list[tuple[int, torch.Tensor, int]]:
    return [(index, wave, target) for wave, target, index in dataset]


def test_prepare_writes_shards_of_the_given_size_and_an_index(sharded):
    corpus, shards = sharded
    index = read_index(shards)
    assert index["dataset"] == "asv19-la" and index["per_shard"] == 5
    assert index["subsets"]["train"]["counts"] == [5, 5, 5, 5, 3]
    assert index["subsets"]["train"]["shards"] == [f"shard-{i:06d}.tar" for i in range(5)]
    assert sorted(p.name for p in (shards / "train").iterdir()) == index["subsets"]["train"]["shards"]


def test_ranks_read_disjoint_shards_covering_the_subset_in_a_seeded_order(sharded):
    corpus, shards = sharded
    trials = read_dataset("asv19-la", corpus, "train")
    ranks = [ShardTrainingSet(shards, "train", trials, num_samples=1600, seed=3, rank=r, world_size=2)
             for r in range(2)]
    seen = [[index for index, _, _ in items(rank)] for rank in ranks]
    assert sorted(seen[0] + seen[1]) == list(range(23)) and not set(seen[0]) & set(seen[1])
    again = ShardTrainingSet(shards, "train", trials, num_samples=1600, seed=3, rank=0, world_size=2)
    assert [i for i, _, _ in items(again)] == seen[0]  # same seed, epoch and world size: same order
    again.set_epoch(1)
    assert sorted(i for i, _, _ in items(again)) == sorted(seen[0]) and [i for i, _, _ in items(again)] != seen[0]
    # The crops and targets are those of the file loader for the same seed and epoch.
    files = TrialDataset(trials, num_samples=1600, train=True, seed=3)
    files.set_epoch(1)
    for index, wave, target in items(again):
        expected, expected_target, _ = files[index]
        assert torch.equal(wave, expected) and target == expected_target


def test_loader_workers_split_the_rank_shards(sharded):
    corpus, shards = sharded
    trials = read_dataset("asv19-la", corpus, "train")
    dataset = ShardTrainingSet(shards, "train", trials, num_samples=1600, seed=3, num_workers=2)
    indices = [i for _, _, batch in DataLoader(dataset, batch_size=4, num_workers=2) for i in batch.tolist()]
    assert sorted(indices) == list(range(23))
    # Worker 0 reads 3 shards (5+5+5 or with the 3-utterance shard), worker 1 two: full batches of 4 per worker.
    assert dataset.batches_per_epoch(4) in (3 + 2, 2 + 2)


def test_shards_of_other_trials_or_too_few_shards_are_refused(sharded, tmp_path):
    corpus, shards = sharded
    other = write_tiny_corpus(tmp_path / "other", {"train": (3, 3), "dev": (2, 2)}, seconds=0.1, seed=9)
    with pytest.raises(InputError, match=r"were written from other trials than train of this corpus \(shards of "
                                         r"asv19-la, 23 utterances; the corpus has 6\)"):
        ShardTrainingSet(shards, "train", read_dataset("asv19-la", other, "train"), num_samples=1600)
    trials = read_dataset("asv19-la", corpus, "train")
    with pytest.raises(InputError, match=r"5 train shard\(s\) in .* for 2 rank\(s\) x 3 loader worker\(s\)"):
        ShardTrainingSet(shards, "train", trials, num_samples=1600, world_size=2, num_workers=3)


def test_training_from_shards(sharded, tmp_path):
    corpus, shards = sharded
    cfg = tiny_config(tmp_path, corpus, name="from-shards", data={"shards": str(shards), "batch_size": 4},
                      train={"epochs": 2})
    run = train(cfg)
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 10]  # 23 utterances in shards of 5,5,5,5,3: 5 full batches of 4
    assert json.loads((run / "meta.json").read_text())["finished"]
    with pytest.raises(InputError, match="data.shards streams the whole training subset"):
        tiny_config(tmp_path, corpus, name="x", data={"shards": str(shards), "max_train": 10})
