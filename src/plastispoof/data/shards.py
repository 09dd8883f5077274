"""WebDataset tar shards of a corpus (``plastispoof prepare --shards DIR``) and the training set that reads them
(``data.shards`` in a config).

Reading a few large tar files in sequence is what keeps a GPU fed from network or spinning disks, where opening
600,000 small FLAC files is not. Shards are written with the ``webdataset`` package: ``DIR/<subset>/
shard-000000.tar``, about ``per_shard`` utterances each, every sample the original audio bytes (``.flac``,
``.wav``, ...) and a ``.json`` record (utt id, label, attack, speaker, subset, index in the subset). The
utterances are spread over the shards in a seeded random order, so every shard mixes classes and attacks.
``DIR/shards.json`` names the corpus, each subset's shards, their utterance counts and a fingerprint of the
subset's trials.

:class:`ShardTrainingSet` is a torch ``IterableDataset``: rank ``r`` of ``world_size`` reads the shards
``r, r + world_size, ...``, and DataLoader worker ``w`` of ``W`` every ``W``-th of those; each epoch the shard
order and a sample shuffle buffer are seeded by ``(seed, epoch, rank, worker)``, so a seed gives the same
sample order for the same shards and world size. Crops and labels are those of
:class:`~plastispoof.data.dataset.TrialDataset` (the crop of an utterance drawn from ``(seed, epoch, index)``).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import IterableDataset, get_worker_info

from plastispoof.audio import fix_length
from plastispoof.data.trials import BONAFIDE, Trial
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json

INDEX = "shards.json"
PER_SHARD = 1000
SHUFFLE_BUFFER = 256


def trials_fingerprint(trials: Sequence[Trial]) -> str:
    """SHA-256 of the utt ids and labels of ``trials`` in order (which corpus subset the shards hold)."""
    digest = hashlib.sha256()
    for trial in trials:
        digest.update(f"{trial.utt_id}\t{trial.label}\n".encode())
    return digest.hexdigest()


def write_shards(subsets: dict[str, list[Trial]], out: str | Path, dataset: str, *, per_shard: int = PER_SHARD,
                 seed: int = 0, show_progress: bool = True) -> dict[str, Any]:
    """Write the trials of each subset as WebDataset shards under ``out/<subset>/``; returns the index."""
    import webdataset as wds
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out = Path(out)
    if per_shard < 1:
        raise InputError(f"utterances per shard must be at least 1, got {per_shard}")
    if (out / INDEX).exists():
        raise InputError(f"{out} already holds shards ({INDEX}); choose an empty folder")
    console = Console(stderr=True)
    progress = Progress(TextColumn("sharding {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, transient=True,
                        disable=not (show_progress and console.is_terminal))
    index: dict[str, Any] = {"format": 1, "dataset": dataset, "per_shard": per_shard, "seed": seed,
                             "created": time.time(), "subsets": {}}
    with progress:
        for subset, trials in subsets.items():
            folder = out / subset
            folder.mkdir(parents=True, exist_ok=True)
            order = list(range(len(trials)))
            random.Random(seed).shuffle(order)  # every shard mixes classes and attacks
            task = progress.add_task(subset, total=len(order))
            counts: list[int] = []
            with wds.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
                for position, i in enumerate(order):
                    trial = trials[i]
                    if position % per_shard == 0:
                        counts.append(0)
                    suffix = Path(trial.path).suffix.lower().lstrip(".") or "flac"
                    sink.write({"__key__": f"{i:09d}", suffix: Path(trial.path).read_bytes(),
                                "json": {"utt_id": trial.utt_id, "label": trial.label, "attack": trial.attack,
                                         "speaker": trial.speaker, "subset": trial.subset, "index": i,
                                         "audio": suffix}})
                    counts[-1] += 1
                    progress.advance(task)
            names = sorted(p.name for p in folder.glob("shard-*.tar"))
            index["subsets"][subset] = {"shards": names, "counts": counts, "utterances": len(trials),
                                        "fingerprint": trials_fingerprint(trials)}
    atomic_write_json(out / INDEX, index)
    return index


def read_index(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / INDEX
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no shards in {directory} (no {INDEX}); write them with plastispoof prepare "
                         "--shards") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path} is not a readable shard index ({err})") from None


def _split(items: Sequence[Any], part: int, parts: int) -> list[Any]:
    return list(items[part::parts])


class ShardTrainingSet(IterableDataset):
    """Training crops read from the shards of one subset (see the module notes).

    ``trials``: the subset's trials as the corpus reader gives them; the shards must hold exactly these
    (checked by fingerprint), so shards of another corpus or subset are refused.
    """

    def __init__(self, directory: str | Path, subset: str, trials: Sequence[Trial], *, num_samples: int,
                 sample_rate: int = 16000, seed: int = 42, rank: int = 0, world_size: int = 1, num_workers: int = 0):
        self.directory = Path(directory)
        index = read_index(directory)
        entry = index["subsets"].get(subset)
        if entry is None:
            raise InputError(f"the shards in {directory} hold no subset {subset!r}; they hold "
                             f"{', '.join(index['subsets'])}")
        if entry["fingerprint"] != trials_fingerprint(trials):
            raise InputError(f"the {subset} shards in {directory} were written from other trials than {subset} of "
                             f"this corpus (shards of {index['dataset']}, {entry['utterances']:,} utterances; the "
                             f"corpus has {len(trials):,}); write them again with plastispoof prepare --shards")
        readers = world_size * max(1, num_workers)
        if len(entry["shards"]) < readers:
            raise InputError(f"{len(entry['shards'])} {subset} shard(s) in {directory} for {world_size} rank(s) x "
                             f"{max(1, num_workers)} loader worker(s): every reader needs a shard; write smaller "
                             f"shards (prepare --shard-size) or use fewer workers")
        self.shards = [self.directory / subset / name for name in entry["shards"]]
        self.counts = list(entry["counts"])
        self.targets = [1 if trial.label == BONAFIDE else 0 for trial in trials]
        self.num_samples, self.sample_rate, self.seed = num_samples, sample_rate, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.epoch = 0
        self.train = True  # what TrialDataset-aware code asks of a training set

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rank_shards(self) -> list[int]:
        """Indices of the shards this rank reads (fixed; only their order changes by epoch)."""
        return _split(range(len(self.shards)), self.rank, self.world_size)

    def batches_per_epoch(self, batch_size: int) -> int:
        """Full batches every rank can make in an epoch (each loader worker batches its own shards), the minimum
        over ranks so every DDP rank takes the same number of steps."""
        workers = max(1, self.num_workers)
        per_rank = []
        for rank in range(self.world_size):
            shards = _split(range(len(self.shards)), rank, self.world_size)
            per_rank.append(sum(sum(self.counts[s] for s in _split(shards, w, workers)) // batch_size
                                for w in range(workers)))
        return min(per_rank)

    def _my_shards(self) -> tuple[list[Path], int]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        order = self.rank_shards()
        random.Random(f"{self.seed}-{self.epoch}-{self.rank}").shuffle(order)
        return [self.shards[s] for s in _split(order, worker, workers)], worker

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, int]]:
        import webdataset as wds

        urls, worker = self._my_shards()
        rng = random.Random(f"{self.seed}-{self.epoch}-{self.rank}-{worker}")
        pipeline = wds.DataPipeline(wds.SimpleShardList([str(url) for url in urls]), wds.tarfile_to_samples(),
                                    wds.shuffle(SHUFFLE_BUFFER, initial=SHUFFLE_BUFFER // 4, rng=rng))
        for sample in pipeline:
            yield self._item(sample)

    def _item(self, sample: dict[str, Any]) -> tuple[torch.Tensor, int, int]:
        record = json.loads(sample["json"])
        audio, rate = sf.read(io.BytesIO(sample[record["audio"]]), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if rate != self.sample_rate:
            import soxr

            audio = soxr.resample(audio, rate, self.sample_rate, quality="HQ").astype(np.float32)
        index = record["index"]
        crop_rng = np.random.default_rng((self.seed, self.epoch, index))
        waveform = fix_length(np.ascontiguousarray(audio, dtype=np.float32), self.num_samples, random_crop=True,
                              rng=crop_rng)
        return torch.from_numpy(waveform), self.targets[index], index
