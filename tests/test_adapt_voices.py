"""The adapt experiment's copy of a voice's prompts (docs/default-detector.md): links that never dangle, and the
headerless GSM prompts of two Asterisk voices handed to `adapt` as WAVs with the very same samples."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from plastispoof.analysis.adapt_voices import user_copy
from plastispoof.audio import load_audio


def test_a_raw_gsm_prompt_becomes_a_wav_with_the_same_samples(tmp_path):
    t = np.arange(8000) / 8000
    prompt = tmp_path / "prompt.gsm"
    sf.write(prompt, 0.3 * np.sin(2 * np.pi * 220 * t), 8000, format="RAW", subtype="GSM610")
    user = tmp_path / "user"
    user.mkdir()
    copy = user_copy(prompt, user)
    assert copy.name == "prompt.wav"
    decoded, _ = sf.read(prompt, dtype="int16", format="RAW", subtype="GSM610", samplerate=8000, channels=1)
    written, rate = sf.read(copy, dtype="int16")
    assert rate == 8000 and np.array_equal(written, decoded) and np.abs(decoded).max() > 1000
    assert load_audio(copy, 16000).size == 16000  # what adapt reads


def test_a_prompt_under_a_relative_root_is_linked_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sounds").mkdir()
    sf.write(tmp_path / "sounds" / "hello.wav", np.zeros(800, dtype=np.float32), 8000)
    user = tmp_path / "runs" / "voice"
    user.mkdir(parents=True)
    link = user_copy(type(tmp_path)("sounds/hello.wav"), user)
    assert link.is_symlink() and os.path.isabs(os.readlink(link)) and link.is_file()
    assert user_copy(type(tmp_path)("sounds/hello.wav"), user) == link  # a second call keeps it
