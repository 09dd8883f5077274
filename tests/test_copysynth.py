"""The copy-synthesis corpus: each vocoder family on real-like audio, the shared channel, the corpus writer,
its splits, leave-one-family-out protocols and manifest, the TTS engines, the open-speech recipe and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from plastispoof.data.copysynth.vocoders import COPY_ATTACKS, analyse, encoder_available
from plastispoof.data.synthetic import SAMPLE_RATE

ASTERISK_FR = "/usr/share/asterisk/sounds/fr_CA_f_June"


def voice(seconds: float = 1.0, f0_start: float = 130.0, f0_end: float = 190.0, seed: int = 0,
          rate: int = SAMPLE_RATE) -> np.ndarray:
    """A bona fide-like clip: 40 harmonics with a rising F0 and vibrato, two formant-like resonances, a noise
    onset and offset (unvoiced), at about -20 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = np.linspace(f0_start, f0_end, n) * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k * (k * f0 < 0.45 * rate) for k in range(1, 41))
    for centre in (600.0, 1800.0):
        b, a = scipy.signal.iirpeak(centre, 4.0, fs=rate)
        voiced = voiced + scipy.signal.lfilter(b, a, voiced)
    gate = ((t > 0.12 * seconds) & (t < 0.9 * seconds)).astype(float)
    gate = np.convolve(gate, np.hanning(int(0.02 * rate)) / np.sum(np.hanning(int(0.02 * rate))), "same")
    x = voiced * gate + 0.3 * np.std(voiced) * rng.standard_normal(n) * (1 - gate) * (t > 0.03 * seconds)
    return 0.1 * x / np.std(x)


def f0_track(x: np.ndarray) -> np.ndarray:
    return analyse(x).f0_frames


def median_cents_error(reference: np.ndarray, other: np.ndarray) -> float:
    both = (reference > 0) & (other > 0)
    assert both.mean() > 0.5, "fewer than half the frames voiced in both"
    return float(np.median(np.abs(1200 * np.log2(other[both] / reference[both]))))


def log_mel(x: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=x, sr=SAMPLE_RATE, n_fft=1024, hop_length=256, n_mels=40)
    return 10 * np.log10(mel + 1e-10)


def mel_distance_db(x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute log-mel difference (dB) over the frames where ``x`` is within 40 dB of its peak."""
    a, b = log_mel(x), log_mel(y)
    loud = a.max(axis=0) > a.max() - 40
    return float(np.mean(np.abs(a[:, loud] - b[:, loud])))


@pytest.fixture(scope="module")
def clip():
    x = voice()
    return x, analyse(x)


def resynthesise(attack_id: str, speech, seed: int = 0) -> np.ndarray:
    return COPY_ATTACKS[attack_id].apply(speech, np.random.default_rng(seed))


@pytest.mark.parametrize("attack_id", sorted(COPY_ATTACKS))
def test_every_family_keeps_the_length_and_changes_the_waveform(clip, attack_id):
    x, speech = clip
    y = resynthesise(attack_id, speech)
    assert y.shape == x.shape and np.isfinite(y).all()
    residual_snr = 10 * np.log10(np.sum(x ** 2) / np.sum((y - x) ** 2))
    assert residual_snr < 30.0  # audibly re-made, not a copy


@pytest.mark.parametrize("attack_id", ["W01", "W02"])
def test_world_follows_the_input_f0(clip, attack_id):
    x, speech = clip
    y = resynthesise(attack_id, speech)
    assert median_cents_error(f0_track(x), f0_track(y)) < 20.0
    assert mel_distance_db(x, y) < 6.0


@pytest.mark.parametrize("attack_id", ["L01", "S01", "S02"])
def test_source_filter_and_sinusoidal_families_keep_pitch_and_envelope(clip, attack_id):
    x, speech = clip
    y = resynthesise(attack_id, speech)
    assert median_cents_error(f0_track(x), f0_track(y)) < 30.0
    assert mel_distance_db(x, y) < 8.0


def test_griffin_lim_keeps_the_magnitude_but_not_the_phase(clip):
    x, speech = clip
    y = resynthesise("G01", speech)
    noise = np.random.default_rng(1).standard_normal(len(x)) * np.std(x)
    assert mel_distance_db(x, y) < 0.3 * mel_distance_db(x, noise)
    # Phase: per STFT bin, the phase difference to the input is spread over the circle (|mean phasor| small).
    sx, sy = (scipy.signal.stft(v, nperseg=512)[2] for v in (x, y))
    strong = np.abs(sx) > 0.1 * np.abs(sx).max()
    coherence = np.abs(np.mean(np.exp(1j * (np.angle(sy) - np.angle(sx)))[strong]))
    assert coherence < 0.3


@pytest.mark.parametrize("attack_id", ["K01", "K02", "K03"])
def test_codecs_decode_to_the_same_length_and_rate_and_stay_aligned(clip, attack_id):
    if not COPY_ATTACKS[attack_id].available():
        pytest.skip(f"this FFmpeg build lacks {COPY_ATTACKS[attack_id].encoders}")
    x, speech = clip
    y = resynthesise(attack_id, speech)
    assert y.shape == x.shape
    reference = x
    if attack_id == "K03":  # the AMR-NB leg runs at 8 kHz: compare with the narrow band the codec could keep
        reference = scipy.signal.sosfiltfilt(scipy.signal.butter(8, 3600, fs=SAMPLE_RATE, output="sos"), x)
    # Realigned: the encoder's priming delay is gone, the best lag is 0.
    lags = np.arange(-40, 41)
    assert abs(lags[np.argmax([np.dot(reference, np.roll(y, lag)) for lag in lags])]) <= 1
    # MP3 and Opus keep the waveform; AMR-NB (CELP, at 8 kHz) keeps less of it.
    assert np.corrcoef(reference, y)[0, 1] > (0.4 if attack_id == "K03" else 0.8)
    if attack_id == "K03":  # nothing left above 4 kHz
        spectrum = np.abs(np.fft.rfft(y)) ** 2
        freqs = np.fft.rfftfreq(len(y), 1 / SAMPLE_RATE)
        assert spectrum[freqs > 4200].sum() < 1e-3 * spectrum.sum()


def test_the_mp3_and_opus_encoders_are_in_the_pinned_pyav():
    assert encoder_available("libmp3lame") and encoder_available("libopus")
    assert not encoder_available("no-such-encoder")
