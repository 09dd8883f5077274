"""Front-end features against librosa / numpy / scipy references."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.fft
import torch

from plastispoof.errors import InputError
from plastispoof.features import LFCC, Deltas, LogMel, Raw, linear_filterbank

SR = 16000


def random_audio(batch: int, samples: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((batch, samples))).astype(np.float32)


def librosa_power(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    return np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop, pad_mode="reflect")) ** 2


@pytest.mark.parametrize("samples, n_mels, f_max", [(16000, 64, None), (12345, 40, 7000.0)])
def test_logmel_matches_librosa(samples, n_mels, f_max):
    audio = random_audio(3, samples)
    ours = LogMel(n_mels=n_mels, f_max=f_max, normalize=False)(torch.from_numpy(audio)).numpy()
    for row, utterance in zip(ours, audio):
        mel = librosa.feature.melspectrogram(y=utterance, sr=SR, n_fft=1024, hop_length=512, n_mels=n_mels,
                                             fmax=f_max, pad_mode="reflect")
        reference = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
        assert row.shape == reference.shape == (n_mels, 1 + samples // 512)
        np.testing.assert_allclose(row, reference, atol=1e-3)


def test_logmel_top_db_clips_below_the_peak():
    audio = random_audio(1, 8000)
    audio[:, 4000:] *= 1e-6  # a near-silent half, 120 dB down
    decibels = LogMel(normalize=False)(torch.from_numpy(audio))
    assert torch.isclose(decibels.max() - decibels.min(), torch.tensor(80.0))
    unclipped = LogMel(normalize=False, top_db=None)(torch.from_numpy(audio))
    assert unclipped.max() - unclipped.min() > 100


def test_logmel_normalises_each_utterance():
    audio = random_audio(2, 16000)
    audio[1] *= 50  # a louder utterance normalises to the same statistics
    features = LogMel()(torch.from_numpy(audio))
    assert torch.allclose(features.mean(dim=(1, 2)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(features.std(dim=(1, 2), unbiased=False), torch.ones(2), atol=1e-3)


def test_linear_filterbank_is_evenly_spaced_triangles():
    filters = linear_filterbank(SR, 1024, 20)
    freqs = np.linspace(0, SR / 2, 513)
    centres = np.arange(1, 21) * (SR / 2) / 21  # 22 equally spaced edges over 0..8 kHz
    assert np.all(np.abs(freqs[filters.argmax(axis=1)] - centres) <= SR / 1024)  # peaks within one FFT bin
    # neighbouring triangles overlap so that they sum to one between the first and the last centre
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    np.testing.assert_allclose(filters[:, inside].sum(axis=0), 1.0, atol=1e-5)
    assert filters.min() == 0.0 and filters.max() <= 1.0


def test_lfcc_matches_numpy_reference():
    audio = random_audio(2, 16000, seed=1)
    ours = LFCC(n_filters=30, n_lfcc=20)(torch.from_numpy(audio)).numpy()
    filters = linear_filterbank(SR, 1024, 30)
    for row, utterance in zip(ours, audio):
        log_energies = np.log(np.maximum(filters @ librosa_power(utterance, 1024, 512), 1e-10))
        reference = scipy.fft.dct(log_energies, type=2, norm="ortho", axis=0)[:20]
        np.testing.assert_allclose(row, reference, atol=1e-3)


@pytest.mark.parametrize("width", [5, 9])
def test_deltas_match_librosa(width):
    features = np.random.default_rng(2).standard_normal((2, 7, 40)).astype(np.float32)
    ours = Deltas(order=2, width=width)(torch.from_numpy(features)).numpy()
    assert ours.shape == (2, 21, 40)
    np.testing.assert_allclose(ours[:, :7], features)
    np.testing.assert_allclose(ours[:, 7:14], librosa.feature.delta(features, width=width, order=1), atol=1e-5)
    np.testing.assert_allclose(ours[:, 14:], librosa.feature.delta(features, width=width, order=2), atol=1e-5)


def test_lfcc_deltas_and_cmvn():
    audio = torch.from_numpy(random_audio(2, 16000, seed=3))
    static = LFCC()(audio)
    with_deltas = LFCC(delta_order=2)(audio)
    assert with_deltas.shape == (2, 60, 32)
    assert torch.equal(with_deltas[:, :20], static)
    expected = librosa.feature.delta(static.numpy(), order=1)
    np.testing.assert_allclose(with_deltas[:, 20:40].numpy(), expected, atol=1e-4)
    normalised = LFCC(cmvn=True)(audio)
    assert torch.allclose(normalised.mean(dim=2), torch.zeros(2, 20), atol=1e-4)


@pytest.mark.parametrize("frontend", [LogMel(), LFCC(delta_order=1), Raw(pre_emphasis=0.97, normalize=True)])
def test_batch_equals_one_by_one_and_gradients_flow(frontend):
    audio = torch.from_numpy(random_audio(3, 8000, seed=4)).requires_grad_()
    batched = frontend(audio)
    singles = torch.cat([frontend(audio[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles, atol=1e-4, rtol=1e-4)
    batched.square().mean().backward()
    assert torch.isfinite(audio.grad).all() and audio.grad.abs().sum() > 0


def test_raw_pre_emphasis_and_normalisation():
    audio = torch.tensor([[1.0, 2.0, 4.0, 3.0]])
    assert torch.allclose(Raw(pre_emphasis=0.5)(audio), torch.tensor([[1.0, 1.5, 3.0, 1.0]]))
    assert torch.equal(Raw()(audio), audio)
    normalised = Raw(normalize=True)(audio * 7 + 3)
    assert torch.allclose(normalised, (audio - audio.mean()) / audio.std(unbiased=False), atol=1e-5)


def test_filterbanks_follow_dtype_casts_but_stay_out_of_checkpoints():
    frontend = LogMel()
    assert frontend.state_dict() == {}  # rebuilt from the constructor arguments, never saved
    audio = torch.from_numpy(random_audio(1, 4000)).double()
    assert frontend(audio).dtype == torch.float32  # features are computed in float32 whatever comes in


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="too short"):
        LogMel()(torch.zeros(1, 300))
    with pytest.raises(InputError, match="too short for deltas"):
        LFCC(delta_order=1)(torch.randn(1, 2048))  # 5 frames < 9
    with pytest.raises(InputError, match="delta_order"):
        LFCC(delta_order=3)
    with pytest.raises(InputError, match="n_lfcc"):
        LFCC(n_filters=10, n_lfcc=20)
