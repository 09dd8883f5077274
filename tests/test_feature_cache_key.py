"""The trainer keys the SSL feature cache by the encoder weights it really trains with (after init_from)."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_run import tiny_config, write_tiny_corpus

from plastispoof.capacity.base import Stage, Strategy, StrategyOptions
from plastispoof.config import load_config
from plastispoof.data.feature_cache import FeatureCache
from plastispoof.data.protocols import read_dataset
from plastispoof.evaluate import evaluate_run
from plastispoof.metrics import trials_eer
from plastispoof.registry import STRATEGIES
from plastispoof.runs import load_run_model, read_jsonl
from plastispoof.score_files import read_scores
from plastispoof.scoring import score_trials
from plastispoof.training import train
from plastispoof.training.loaders import training_data

NUM_SAMPLES = 4000


class ContinueOptions(StrategyOptions):
    run: str


@STRATEGIES.register("test-continue-from")
class ContinueFrom(Strategy):
    """One stage that starts from another finished run's weights."""

    name = "test-continue-from"
    Options = ContinueOptions

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("continue", epochs, init_from=self.options.run)]


def _config(out: Path, corpus: Path, cache: Path, name: str, seed: int, strategy: dict | None = None):
    cfg = tiny_config(out, corpus, name=name, model={"name": "ssl-linear",
                                                     "args": {"frontend": {"size": "tiny", "freeze": True}}},
                      data={"num_samples": NUM_SAMPLES, "feature_cache": str(cache),
                            "feature_cache_dtype": "float32"},  # exactly the waveforms' scores
                      train={"epochs": 1, "max_steps_per_epoch": 1})
    update = {"seed": seed}
    if strategy:
        update["strategy"] = cfg.strategy.model_copy(update=strategy)
    return cfg.model_copy(update=update)


def test_a_run_started_from_another_uses_the_features_of_that_runs_encoder(tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", seconds=0.3,
                               counts={"train": (4, 4), "dev": (3, 3), "eval": (1, 1)})
    cache, out = tmp_path / "cache", tmp_path / "runs"
    first = train(_config(out, corpus, cache, "first", seed=1))
    keys_after_first = sorted(p.name for p in cache.iterdir())
    assert len(keys_after_first) == 1

    # Another seed: its freshly built encoder differs, until init_from loads the first run's weights.
    second_cfg = _config(out, corpus, cache, "second", seed=2,
                         strategy={"name": "test-continue-from", "args": {"run": str(first)}})
    torch.manual_seed(2)
    second = train(second_cfg)
    model, _ = load_run_model(second)
    final_key = model.frontend.cache_key(num_samples=NUM_SAMPLES, sample_rate=16000)
    assert final_key == keys_after_first[0]  # the first run's encoder, hence its features
    assert sorted(p.name for p in cache.iterdir()) == keys_after_first  # nothing keyed by the unloaded weights
    cached = sorted(p.name for p in (cache / final_key).glob("*.safetensors"))
    assert cached  # the second run read (and possibly added) features under the right key


def test_dev_is_scored_from_the_cache_with_the_scores_of_the_waveforms(tmp_path):
    """Every epoch's dev EER reads cached features (the encoder runs once per utterance, not once per epoch), and
    they give the scores first-crop scoring of the waveforms gives."""
    corpus = write_tiny_corpus(tmp_path / "corpus", seconds=0.3,
                               counts={"train": (4, 4), "dev": (3, 3), "eval": (1, 1)})
    cache = tmp_path / "cache"
    run = train(_config(tmp_path / "runs", corpus, cache, "run", seed=1))
    model, _ = load_run_model(run)
    data = training_data(load_config(run / "config.yaml"), model, torch.device("cpu"))
    cached = data.dev_scores(model, batch_size=4)
    direct = score_trials(model, data.dev_trials, NUM_SAMPLES, 4, "cpu", show_progress=False)
    assert cached.keys() == direct.keys() and len(direct) == 6
    assert all(abs(cached[utt] - direct[utt]) <= 1e-5 * (1 + abs(direct[utt])) for utt in direct)
    assert read_jsonl(run / "metrics.jsonl")[-1]["dev_eer"] == trials_eer(data.dev_trials, direct)[0]
    key = model.frontend.cache_key(num_samples=NUM_SAMPLES, sample_rate=16000)
    assert all(FeatureCache(cache, key).get(t.utt_id) is not None for t in data.dev_trials)


def test_evaluate_reads_the_runs_feature_cache_and_gives_the_waveforms_scores(tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus", seconds=0.3,
                               counts={"train": (4, 4), "dev": (3, 3), "eval": (3, 2)})
    cache = tmp_path / "cache"
    run = train(_config(tmp_path / "runs", corpus, cache, "run", seed=1))
    report = evaluate_run(run, "asv19-la", corpus, "eval", bootstrap=0)
    model, _ = load_run_model(run)
    trials = read_dataset("asv19-la", corpus, "eval")
    direct = score_trials(model, trials, NUM_SAMPLES, 4, "cpu", show_progress=False)
    written = read_scores(run / "scores" / "asv19-la-eval.txt")
    assert written.keys() == direct.keys() and len(direct) == 5
    assert all(abs(written[utt] - direct[utt]) <= 1e-5 * (1 + abs(direct[utt])) for utt in direct)
    assert report["eer"] == trials_eer(trials, direct)[0]
    key = model.frontend.cache_key(num_samples=NUM_SAMPLES, sample_rate=16000)
    assert all(FeatureCache(cache, key).get(t.utt_id) is not None for t in trials)  # eval went through the cache
