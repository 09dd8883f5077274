"""The batched scoring core, one code path for every score the toolkit makes.

Two ways to score an utterance, named because a threshold only fits scores made alike:

* ``first-crop`` (:data:`FIRST_CROP`): the first ``num_samples`` samples, repeat-padded when shorter -- the
  ASVspoof convention; training's dev scores and ``evaluate`` (:func:`score_trials`).
* ``window-mean`` (:data:`WINDOW_MEAN`): the mean over half-overlapping windows covering the whole file -- what
  ``plastispoof score`` returns (:class:`WindowScorer`, mixed into the PyTorch ``Detector`` and the ONNX one).

The score of a window is the model's ``score()`` (bona fide logit minus spoof logit unless the model says
otherwise), higher = more bona fide. PyTorch is imported only where a model runs, so the ONNX scorer uses this
module without it. When many files are scored, the windows of consecutive files share batches
(:func:`batched_window_scores`; a folder of short clips is one window each, so batching per file would run the
model on batches of one) and files are decoded ahead in threads (:func:`decoded_ahead`), with a bounded
look-ahead so memory does not grow with the number of files.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from plastispoof.audio import StreamedAudio, load_audio, sliding_windows
from plastispoof.errors import InputError

FIRST_CROP = "first-crop"  # the first num_samples samples, repeat-padded (training's dev scores, evaluate)
WINDOW_MEAN = "window-mean"  # the mean over the half-overlapping windows of the whole file (score, Detector)
CONVENTION_TEXT = {  # written beside stored thresholds and calibrations, for people
    FIRST_CROP: "first num_samples samples of each file, repeat-padded when shorter (ASVspoof convention)",
    WINDOW_MEAN: "whole file, half-overlapping windows of the model's input length, mean over windows"}

Key = TypeVar("Key")

if TYPE_CHECKING:  # PyTorch is imported where a model runs: the ONNX scorer shares this module without it
    import torch
    from torch import nn


def run_threshold(meta: dict[str, Any], convention: str = WINDOW_MEAN) -> float | None:
    """A run's dev EER threshold for scores made by ``convention``, or None when the run has none.

    Runs that name no convention were all scored ``first-crop`` in training.

    >>> run_threshold({"dev_threshold": 0.3})  # an older run: its threshold is first-crop only
    >>> run_threshold({"dev_threshold": 0.3}, FIRST_CROP)
    0.3
    >>> run_threshold({"dev_threshold": 0.3, "dev_threshold_convention": "first-crop",
    ...                "dev_thresholds": {"first-crop": 0.3, "window-mean": 0.1}})
    0.1
    """
    thresholds = dict(meta.get("dev_thresholds") or {})
    if meta.get("dev_threshold") is not None:
        thresholds.setdefault(meta.get("dev_threshold_convention", FIRST_CROP), meta["dev_threshold"])
    return thresholds.get(convention)


def model_scores(model: nn.Module, waves: torch.Tensor) -> torch.Tensor:
    """Bona fide score per row of ``waves``: ``model.score`` when the model has one, else logit 1 - logit 0."""
    if callable(getattr(model, "score", None)):
        return model.score(waves)
    logits = model(waves)
    return logits[:, 1] - logits[:, 0]


def score_trials(model: nn.Module, trials: Sequence[Any], num_samples: int, batch_size: int,
                 device: str | torch.device, *, sample_rate: int = 16000, num_workers: int = 0,
                 show_progress: bool = True) -> dict[str, float]:
    """``{utt_id: score}`` for every trial, ``first-crop``: batched, eval mode, no gradients.

    The model's training mode is restored afterwards.
    """
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from torch.utils.data import DataLoader

    from plastispoof.data.dataset import TrialDataset

    device = torch.device(device)
    dataset = TrialDataset(list(trials), num_samples=num_samples, sample_rate=sample_rate, train=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    was_training = model.training
    model.eval()
    scores: dict[str, float] = {}
    console = Console(stderr=True)
    progress = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, transient=True, disable=not (show_progress and console.is_terminal))
    try:
        with torch.no_grad(), progress:
            task = progress.add_task("scoring", total=len(dataset))
            for waves, _, indices in loader:
                batch_scores = model_scores(model, waves.to(device, non_blocking=True)).float().cpu()
                for index, score in zip(indices.tolist(), batch_scores.tolist()):
                    scores[trials[index].utt_id] = score
                progress.advance(task, len(indices))
    finally:
        model.train(was_training)
    return scores


def decoded_ahead(paths: Iterable[Key], load: Callable[[Key], np.ndarray], workers: int = 2,
                  ahead: int = 8) -> Iterator[tuple[Key, np.ndarray | InputError]]:
    """``(path, waveform)`` in the order given, each decoded by ``load`` in one of ``workers`` threads while
    the caller works on earlier ones; at most ``ahead`` files wait decoded. A file ``load`` refuses comes
    back with its :class:`InputError` in place of the waveform, and the others go on.

    >>> [(key, len(wave)) for key, wave in decoded_ahead([3, 1, 2], lambda n: np.zeros(n))]
    [(3, 3), (1, 1), (2, 2)]
    """
    def guarded(path: Key) -> np.ndarray | InputError:
        try:
            return load(path)
        except InputError as err:
            return err

    if workers <= 0:
        yield from ((path, guarded(path)) for path in paths)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        waiting: deque = deque()
        for path in paths:
            waiting.append((path, pool.submit(guarded, path)))
            if len(waiting) > ahead:
                done, future = waiting.popleft()
                yield done, future.result()
        while waiting:
            done, future = waiting.popleft()
            yield done, future.result()


def batched_window_scores(score_batch: Callable[[np.ndarray], np.ndarray],
                          items: Iterable[tuple[Key, np.ndarray | None]], batch_size: int
                          ) -> Iterator[tuple[Key, np.ndarray | None]]:
    """Score the windows of many items, the windows of consecutive items sharing batches.

    ``items`` are ``(key, windows)`` with ``windows`` of shape ``(n, num_samples)`` (or any iterable of such rows,
    e.g. the windows of a long file read block by block), or None for an item with nothing to score (passed
    through). Each ``(key, window scores)`` comes out in the input order as soon as
    all its windows are scored; ``score_batch`` maps a ``(b, num_samples)`` float32 array to ``b`` scores and
    never sees more than ``batch_size`` rows.

    >>> items = [("a", np.ones((3, 2))), ("bad", None), ("b", 2 * np.ones((1, 2)))]
    >>> sizes = []
    >>> def score(batch):
    ...     sizes.append(len(batch))
    ...     return batch.sum(axis=1)
    >>> [(key, None if s is None else s.tolist()) for key, s in batched_window_scores(score, items, 2)]
    [('a', [2.0, 2.0, 2.0]), ('bad', None), ('b', [4.0])]
    >>> sizes  # a's third window and b's window share the second batch
    [2, 2]
    """
    # [key, scores so far or None, windows still unscored, all windows handed over]
    waiting: deque[list[Any]] = deque()
    pending: list[np.ndarray] = []
    owners: list[list[Any]] = []

    def flush() -> None:
        scores = np.asarray(score_batch(np.ascontiguousarray(np.stack(pending), dtype=np.float32)))
        for owner, score in zip(owners, scores):
            owner[1].append(score)
            owner[2] -= 1
        pending.clear()
        owners.clear()

    def finished() -> Iterator[tuple[Key, np.ndarray | None]]:
        while waiting and waiting[0][3] and waiting[0][2] == 0:
            key, scores, _, _ = waiting.popleft()
            yield key, None if scores is None else np.asarray(scores, dtype=np.float32)

    for key, windows in items:
        entry = [key, None if windows is None else [], 0, False]
        waiting.append(entry)
        for window in () if windows is None else windows:  # an array, or a generator over a long file
            pending.append(window)
            owners.append(entry)
            entry[2] += 1
            if len(pending) == batch_size:
                flush()
                yield from finished()
        entry[3] = True
        yield from finished()
    if pending:
        flush()
    yield from finished()


def file_score(window_scores: np.ndarray) -> float:
    """A file's ``window-mean`` score from its window scores (float32, averaged in float64)."""
    return float(np.mean(window_scores, dtype=np.float64))


class WindowScorer:
    """Scores files as ``window-mean`` scores, batching windows across files.

    A scorer provides ``num_samples``, ``sample_rate``, ``batch_size``, ``decode_workers`` and
    ``score_batch(batch) -> scores`` (a ``(b, num_samples)`` float32 array in, ``b`` scores out).
    """

    num_samples: int
    sample_rate: int
    batch_size: int
    decode_workers: int = 2

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def windows(self, waveform: np.ndarray) -> np.ndarray:
        """The ``(n, num_samples)`` windows a waveform is scored on."""
        return sliding_windows(waveform, window=self.num_samples)

    def window_scores(self, waveform: np.ndarray) -> np.ndarray:
        """The score of every window of :meth:`windows` (their mean is :meth:`score_waveform`)."""
        return next(batched_window_scores(self.score_batch, [(None, self.windows(waveform))], self.batch_size))[1]

    def score_waveform(self, waveform: np.ndarray) -> float:
        """Mean score over the windows of a mono waveform at the scorer's sample rate."""
        return file_score(self.window_scores(waveform))

    def score_file(self, path: str | Path) -> float:
        """Score one audio file of any length (:class:`InputError` when it cannot be decoded)."""
        return self.score_waveform(load_audio(path, self.sample_rate))

    def scored_files(self, paths: Iterable[Key], load: Callable[[Key], np.ndarray] | None = None
                     ) -> Iterator[tuple[Key, np.ndarray | InputError, np.ndarray | None]]:
        """``(path, waveform or its decoding error, window scores or None)`` for every path, in order, decoded
        ahead in threads and scored with the windows of neighbouring files in one batch. ``load`` reads a
        path (default: :func:`~plastispoof.audio.load_audio` at the scorer's rate)."""
        load = load or (lambda path: load_audio(path, self.sample_rate))
        decoded: dict[int, np.ndarray | InputError] = {}

        def items() -> Iterator[tuple[tuple[int, Key], np.ndarray | None]]:
            for index, (path, wave) in enumerate(decoded_ahead(paths, load, self.decode_workers)):
                decoded[index] = wave
                if isinstance(wave, StreamedAudio):  # read here, block by block, as its windows are scored
                    yield (index, path), wave.windows(self.num_samples)
                else:
                    yield (index, path), None if isinstance(wave, InputError) else self.windows(wave)

        for (index, path), scores in batched_window_scores(self.score_batch, items(), self.batch_size):
            wave = decoded.pop(index)
            if isinstance(wave, StreamedAudio) and wave.error is not None:
                yield path, wave.error, None
            else:
                yield path, wave, scores


def window_mean_scores(scorer: WindowScorer, trials: Sequence[Any], show_progress: bool = True,
                       description: str = "scoring whole files") -> dict[str, float]:
    """``{utt_id: score}`` of every trial, ``window-mean``: the whole file, as ``plastispoof score`` scores it,
    the windows of neighbouring files sharing batches. Used for dev thresholds, calibration dev scores and
    ``evaluate --full``. A file that cannot be decoded is an :class:`InputError`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    progress = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, transient=True, disable=not (show_progress and console.is_terminal))
    scores: dict[str, float] = {}
    with progress:
        task = progress.add_task("files", total=len(trials))
        for trial, (_, wave, per_window) in zip(trials, scorer.scored_files([trial.path for trial in trials])):
            if isinstance(wave, InputError):
                raise wave
            scores[trial.utt_id] = file_score(per_window)
            progress.advance(task)
    return scores
