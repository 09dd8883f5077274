"""Fixtures shared by the test files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

# pytest-xdist runs one worker per core: more threads per worker only oversubscribe the cores.
torch.set_num_threads(1)


def _sine(frequency: float = 440.0, seconds: float = 0.25, sample_rate: int = 16000,
          amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.fixture
def sine():
    """``sine(frequency=440, seconds=0.25, sample_rate=16000, amplitude=0.5)`` -> float32 array."""
    return _sine


@pytest.fixture
def audio_file(tmp_path):
    """Factory writing ``x`` (default: 0.25 s of a 440 Hz sine) to ``tmp_path/name`` with soundfile.

    ``x`` is (samples,) or (samples, channels); the format follows the suffix (.flac, .wav, ...); sub-folders of
    ``name`` are created. Returns the path.
    """

    def write(name: str = "a.flac", x: np.ndarray | None = None, sample_rate: int = 16000,
              subtype: str | None = None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _sine(sample_rate=sample_rate) if x is None else x, sample_rate, subtype=subtype)
        return path

    return write


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """The embedded corpus, ``tiny`` profile, written once per test process (root for dataset ``synthetic``)."""
    from plastispoof.data.synthetic import write_corpus

    return write_corpus(tmp_path_factory.mktemp("tiny-corpus"), profile="tiny", seed=42)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny ASVspoof-2019-LA-style corpus (``tiny_run.write_tiny_corpus`` defaults), one per test module; a
    module that needs other lengths or counts defines its own ``corpus``."""
    from tiny_run import write_tiny_corpus

    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory, corpus):
    """A tiny GRNN run trained and calibrated on ``corpus`` (``serve_live.calibrated_tiny_run``), one per module:
    what the service tests serve."""
    from serve_live import calibrated_tiny_run

    return calibrated_tiny_run(tmp_path_factory.mktemp("runs"), corpus)
