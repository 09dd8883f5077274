"""The embedded corpus: procedural speech-like audio and resynthesis spoofs, in the ASVspoof 2019 LA layout.

Bona fide utterances come from a small source-filter speech synthesiser (glottal pulses with F0 contours,
jitter, shimmer and aspiration; fricatives and plosive bursts; time-varying formant resonators; per-speaker
traits). A spoof is a fresh utterance of the same kind sent through one attack pipeline (Griffin-Lim, LPC or
harmonic vocoders, codecs, concatenation, ...), each with its own artefact and a strength drawn per
utterance. Both classes then go through the same random channel (room, equaliser, background noise, level),
so the class cue is the artefact, never the channel. Train and dev hold the seen attacks A01-A06; eval adds
unseen ones, like ASVspoof 2019. ``docs/corpus.md`` describes every attack and the measured difficulty.

>>> sorted(PROFILES)
['demo', 'full', 'tiny']
>>> [a.attack_id for a in ATTACKS.values() if not a.seen]
['A07', 'A08', 'A09', 'A10', 'A11', 'A12', 'A13']
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, Iterator

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import soundfile as sf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from scipy.ndimage import uniform_filter1d

from plastispoof.errors import InputError

SAMPLE_RATE = 16_000
FRAME = 160  # control-rate hop of the synthesiser: 10 ms
GENERATOR_VERSION = 2  # bump when the audio changes, so cached corpora are rebuilt
STAMP_NAME = "plastispoof_synth.json"
SUBSETS = ("train", "dev", "eval")
_SUBSET_LETTER = {"train": "T", "dev": "D", "eval": "E"}
_PROTOCOL_SUFFIX = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


# ----------------------------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """How big a corpus is.

    utterances: subset -> (bona fide count, spoof count).
    speakers: subset -> number of speakers (disjoint between subsets, as in ASVspoof).
    seconds: (shortest, longest) utterance length.
    """

    utterances: dict[str, tuple[int, int]]
    speakers: dict[str, int]
    seconds: tuple[float, float]


PROFILES: dict[str, Profile] = {
    # For tests: writes in a few seconds.
    "tiny": Profile({"train": (10, 30), "dev": (6, 18), "eval": (8, 24)},
                    {"train": 4, "dev": 3, "eval": 4}, (1.0, 1.0)),
    # For the CPU demo: big enough that methods differ, small enough to train ResNet18 many times in minutes.
    "demo": Profile({"train": (150, 450), "dev": (75, 225), "eval": (150, 450)},
                    {"train": 12, "dev": 6, "eval": 16}, (2.0, 3.0)),
    # ASVspoof 2019 LA proportions (about 10 % bona fide), counts divided by 20.
    "full": Profile({"train": (129, 1140), "dev": (127, 1115), "eval": (368, 3194)},
                    {"train": 20, "dev": 10, "eval": 48}, (3.5, 4.5)),
}


# ----------------------------------------------------------------------------------------------- speakers


@dataclass(frozen=True)
class Speaker:
    """Traits that make one synthetic voice recognisable across its utterances."""

    speaker_id: str
    f0_hz: float  # median F0
    f0_range_st: float  # intonation range in semitones
    formant_scale: float  # inverse vocal-tract length relative to an adult male
    breathiness: float  # aspiration noise relative to the glottal pulses
    syllables_per_s: float
    jitter: float  # relative period perturbation per glottal cycle
    shimmer: float  # relative amplitude perturbation per glottal cycle
    open_quotient: float  # open part of the glottal cycle
    darkness: float  # one-pole low-pass on the source: higher = steeper spectral tilt


def make_speaker(speaker_id: str, female: bool, rng: np.random.Generator) -> Speaker:
    """Draw one speaker's traits."""
    return Speaker(
        speaker_id=speaker_id,
        f0_hz=rng.uniform(165, 250) if female else rng.uniform(90, 145),
        f0_range_st=rng.uniform(3.0, 8.0),
        formant_scale=rng.uniform(1.10, 1.24) if female else rng.uniform(0.92, 1.06),
        breathiness=rng.uniform(0.03, 0.25) * (1.5 if female else 1.0),
        syllables_per_s=rng.uniform(3.2, 5.8),
        jitter=rng.uniform(0.003, 0.012),
        shimmer=rng.uniform(0.02, 0.07),
        open_quotient=rng.uniform(0.45, 0.75),
        darkness=rng.uniform(0.0, 0.4),
    )


# ------------------------------------------------------------------------------------------ signal helpers


@lru_cache(maxsize=256)
def _butter(order: int, cutoff: float | tuple[float, float], btype: str) -> np.ndarray:
    """Butterworth second-order sections (designing one costs milliseconds, so designs are reused)."""
    return scipy.signal.butter(order, cutoff, btype=btype, fs=SAMPLE_RATE, output="sos")


@lru_cache(maxsize=16)
def _hann(length: int) -> np.ndarray:
    return scipy.signal.get_window("hann", length)  # periodic: shifted copies at length/2 or /4 sum flat


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Sum ``frames`` (n, length) placed ``hop`` samples apart; vectorised over frames."""
    n, length = frames.shape
    blocks = -(-length // hop)
    padded = np.zeros((n, blocks * hop), dtype=frames.dtype)
    padded[:, :length] = frames
    padded = padded.reshape(n, blocks, hop)
    out = np.zeros((n + blocks - 1, hop), dtype=frames.dtype)
    for j in range(blocks):
        out[j:j + n] += padded[:, j]
    return out.ravel()[: (n - 1) * hop + length]


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Frames (1 + len(x) // hop, length) centred on multiples of ``hop``, zero padded at the edges."""
    padded = np.pad(x, (length // 2, length // 2 + hop))
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::hop][: 1 + len(x) // hop]


def _stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Complex spectrogram (bins, frames) with a Hann window, frames centred on multiples of ``hop``."""
    return scipy.fft.rfft((_frames(x, n_fft, hop) * _hann(n_fft)).astype(np.float32), axis=1).T


def _istft(spec: np.ndarray, hop: int, n: int) -> np.ndarray:
    """Least-squares inverse of :func:`_stft`, cut to ``n`` samples."""
    n_fft = 2 * (spec.shape[0] - 1)
    y = _overlap_add(scipy.fft.irfft(spec.T, n_fft, axis=1) * _hann(n_fft).astype(np.float32), hop)
    return (y * _inverse_window_sum(n_fft, hop, spec.shape[1]))[n_fft // 2: n_fft // 2 + n].astype(np.float64)


@lru_cache(maxsize=32)
def _inverse_window_sum(n_fft: int, hop: int, n_frames: int) -> np.ndarray:
    """1 / the overlap-added squared windows: the normalisation of a least-squares inverse STFT."""
    return (1 / np.maximum(_overlap_add(np.tile(_hann(n_fft) ** 2, (n_frames, 1)), hop), 1e-8)).astype(np.float32)


def _filter_frames(x: np.ndarray, response: np.ndarray, hop: int = FRAME) -> np.ndarray:
    """Time-varying filtering: frame ``i`` of ``response`` (frames, n_fft // 2 + 1) acts around sample i*hop.

    Each Hann-windowed stretch of 2*hop samples is convolved (linearly, through a zero-padded FFT) with its
    frame's impulse response and the results are overlap-added, so moving resonances change smoothly. The
    impulse responses must die out within n_fft - 2*hop samples.
    """
    n_fft = 2 * (response.shape[1] - 1)
    segments = (_frames(x, 2 * hop, hop) * _hann(2 * hop)).astype(np.float32)
    filtered = scipy.fft.irfft(scipy.fft.rfft(segments, n_fft, axis=1) * response[: len(segments)], n_fft, axis=1)
    return _overlap_add(filtered, hop)[hop: hop + len(x)].astype(np.float64)


def _match_rms(y: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return y * np.sqrt(np.mean(reference ** 2) / (np.mean(y ** 2) + 1e-20))


def _moving_rms(x: np.ndarray, width: int) -> np.ndarray:
    return np.sqrt(np.maximum(uniform_filter1d(x ** 2, width, mode="nearest"), 0.0))


# ------------------------------------------------------------------------------------- speech synthesiser

# Peterson & Barney (1952) average F1-F3 of adult male vowels (Hz): i, I, E, ae, a, O, U, u, V, 3r.
_VOWELS = np.array([[270, 2290, 3010], [390, 1990, 2550], [530, 1840, 2480], [660, 1720, 2410],
                    [730, 1090, 2440], [570, 840, 2410], [440, 1020, 2240], [300, 870, 2240],
                    [640, 1190, 2390], [490, 1350, 1690]], dtype=float)
# F4-F7 of an adult male; the wide F6 and F7 stand in for the higher poles that keep energy up to 8 kHz.
_HIGH_FORMANTS = np.array([3500.0, 4500.0, 5600.0, 6800.0])
_NASAL = np.array([250.0, 1100.0, 2300.0, *_HIGH_FORMANTS])
_BANDWIDTHS = np.array([70.0, 100.0, 150.0, 220.0, 280.0, 450.0, 700.0])
# Noise sources (band edges, Hz): /s/-like, /sh/-like, /f/-like, plosive burst.
_FRICATIVE_BANDS = ((3800.0, 7600.0), (2000.0, 5200.0), (900.0, 7600.0), (700.0, 6000.0))
_TRACT_FFT = 1024  # impulse responses of the vocal tract die out well within 1024 - 2 * FRAME samples


@dataclass
class SpeechPlan:
    """Control tracks of one utterance at 10 ms frames; rendering it twice gives two takes of the same text."""

    n_samples: int
    f0_st: np.ndarray  # (frames,) semitones from the speaker's median F0
    voicing: np.ndarray  # (frames,) 0..1
    amplitude: np.ndarray  # (frames,)
    formants: np.ndarray  # (frames, 7) Hz
    bandwidths: np.ndarray  # (frames, 7) Hz
    frication: np.ndarray  # (frames, 4) gains of the noise sources in _FRICATIVE_BANDS


@dataclass
class DrySpeech:
    """An utterance before any channel, with what a TTS front end would know about it."""

    audio: np.ndarray
    f0: np.ndarray  # per-sample intended F0 in Hz (no jitter)
    voiced: np.ndarray  # per-sample bool
    speaker: Speaker
    plan: SpeechPlan = field(repr=False)


def plan_speech(speaker: Speaker, n_samples: int, rng: np.random.Generator) -> SpeechPlan:
    """Phrases of syllables (optional consonant onset, vowel nucleus, optional coda) with their prosody."""
    n_frames = n_samples // FRAME + 1
    f0_st = np.zeros(n_frames)
    voicing = np.zeros(n_frames)
    amplitude = np.zeros(n_frames)
    frication = np.zeros((n_frames, len(_FRICATIVE_BANDS)))
    scale = speaker.formant_scale
    formants = np.tile(np.array([500.0, 1500.0, 2500.0, *_HIGH_FORMANTS]) * scale, (n_frames, 1))
    bandwidths = np.tile(_BANDWIDTHS * (1 + speaker.breathiness), (n_frames, 1))

    def frames(seconds: float) -> int:
        return max(1, int(round(seconds * SAMPLE_RATE / FRAME)))

    def bump(track: np.ndarray, start: int, length: int, height: float) -> None:
        """Add a half-sine of ``height`` over ``length`` frames (cut at the end of the utterance)."""
        stop = min(start + length, n_frames)
        if stop > start:
            track[start:stop] += height * np.sin(np.pi * (np.arange(start, stop) - start + 0.5) / length)

    pos = frames(rng.uniform(0.04, 0.2))
    end = n_frames - frames(rng.uniform(0.04, 0.15))
    while pos < end - frames(0.12):
        phrase_start = pos
        for _ in range(rng.integers(3, 9)):
            syllable_end = pos + frames(rng.uniform(0.75, 1.3) / speaker.syllables_per_s)
            stress = rng.uniform(0.55, 1.0)
            onset = rng.choice(4, p=[0.3, 0.3, 0.25, 0.15])  # none, fricative, plosive, nasal
            if onset == 1:  # fricative: a noise source alone
                length, kind = frames(rng.uniform(0.05, 0.11)), rng.choice(3, p=[0.45, 0.25, 0.3])
                bump(frication[:, kind], pos, length, rng.uniform(0.3, 1.0) * (0.4 if kind == 2 else 1.0))
                pos += length
            elif onset == 2:  # plosive: closure silence, burst, aspiration
                pos += frames(rng.uniform(0.03, 0.07))
                burst = frames(rng.uniform(0.008, 0.016))
                frication[pos:pos + burst, 3] = rng.uniform(0.5, 1.2)
                aspiration = frames(rng.uniform(0.01, 0.04))
                frication[pos + burst:pos + burst + aspiration, 2] = 0.25
                pos += burst + aspiration
            elif onset == 3:  # nasal murmur: voiced, weak, nasal formants
                length = frames(rng.uniform(0.04, 0.08))
                voicing[pos:pos + length] = 1.0
                amplitude[pos:pos + length] = 0.3 * stress
                formants[pos:pos + length] = _NASAL * scale
                bandwidths[pos:pos + length] *= 1.8
                pos += length
            nucleus = max(syllable_end - pos, frames(0.06))
            voicing[pos:pos + nucleus] = 1.0
            bump(amplitude, pos, nucleus, stress)
            formants[pos:pos + nucleus] = np.concatenate(
                [_VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.94, 1.06, 3), _HIGH_FORMANTS]) * scale
            if stress > 0.85:  # pitch accent on stressed syllables
                bump(f0_st, pos, nucleus, rng.uniform(0.4, 1.0) * speaker.f0_range_st * 0.5)
            pos += nucleus
            if rng.random() < 0.25:  # fricative coda
                length = frames(rng.uniform(0.04, 0.09))
                bump(frication[:, rng.integers(3)], pos, length, 0.5)
                pos += length
            if pos >= end:
                break
        pos = min(pos, end)
        # Declination over the phrase, then a final fall (or, sometimes, a question-like rise).
        length = pos - phrase_start
        declination = rng.uniform(1.0, 4.0)
        f0_st[phrase_start:pos] += np.linspace(declination / 2, -declination / 2, length)
        tail = min(length, frames(0.15))
        boundary = rng.uniform(1.0, 4.0) if rng.random() < 0.3 else -rng.uniform(1.0, 3.0)
        f0_st[pos - tail:pos] += np.linspace(0, boundary, tail)
        pos += frames(rng.uniform(0.08, 0.3))  # pause
    for track in (voicing, amplitude, frication):
        track[end:] = 0.0
    # A slow random wander of F0 (a few tenths of a semitone) on top of the intonation.
    f0_st += uniform_filter1d(rng.standard_normal(n_frames), frames(0.15), mode="nearest") * 1.5
    return SpeechPlan(n_samples=n_samples, f0_st=f0_st, voicing=voicing, amplitude=amplitude,
                      formants=formants, bandwidths=bandwidths, frication=frication)


def _to_samples(track: np.ndarray, n: int, hop: int = FRAME) -> np.ndarray:
    """Track (frames,) or (frames, k) at frames ``hop`` apart -> ``n`` per-sample values, linearly interpolated."""
    lower, frac = _interpolation_weights(n, hop, len(track))
    if track.ndim == 2:
        frac = frac[:, None]
    return (1 - frac) * track[lower] + frac * track[lower + 1]


@lru_cache(maxsize=32)
def _interpolation_weights(n: int, hop: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    position = np.arange(n) / hop
    lower = np.minimum(position.astype(int), n_frames - 2)
    return lower, np.minimum(position - lower, 1.0)


def _glottal_flow(phase: np.ndarray, open_quotient: float) -> np.ndarray:
    """Rosenberg-style glottal flow pulse as a function of the fractional cycle phase (0..1)."""
    rise, fall = 0.62 * open_quotient, 0.38 * open_quotient
    flow = np.where(phase < rise, 0.5 * (1 - np.cos(np.pi * phase / rise)), 0.0)
    closing = (phase >= rise) & (phase < rise + fall)
    return np.where(closing, np.cos(0.5 * np.pi * (phase - rise) / fall), flow)


def _vocal_tract(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Frequency responses (frames, bins) of cascades of unit-DC-gain formant resonators."""
    radius = np.exp(-np.pi * bandwidths / SAMPLE_RATE)
    theta = 2 * np.pi * np.minimum(formants, 0.45 * SAMPLE_RATE) / SAMPLE_RATE
    a1, a2 = -2 * radius * np.cos(theta), radius ** 2
    denominator = np.ones((len(formants), 1))
    for k in range(formants.shape[1]):  # multiply the second-order polynomials of all resonators
        denominator = (np.pad(denominator, ((0, 0), (0, 2))) + a1[:, k:k + 1] * np.pad(denominator, ((0, 0), (1, 1)))
                       + a2[:, k:k + 1] * np.pad(denominator, ((0, 0), (2, 0))))
    gain = np.prod(1 + a1 + a2, axis=1, keepdims=True)
    return (gain / scipy.fft.rfft(denominator, _TRACT_FFT, axis=1)).astype(np.complex64)


def _intended_f0(speaker: Speaker, plan: SpeechPlan, f0_shift_st: float) -> np.ndarray:
    return speaker.f0_hz * 2.0 ** ((_to_samples(plan.f0_st, plan.n_samples) + f0_shift_st) / 12)


def render_speech(speaker: Speaker, plan: SpeechPlan, rng: np.random.Generator, f0_shift_st: float = 0.0,
                  ) -> DrySpeech:
    """Turn a plan into a waveform: glottal source, vocal-tract resonators, noise sources."""
    n = plan.n_samples
    f0 = _intended_f0(speaker, plan, f0_shift_st)
    # Jitter and shimmer: one random perturbation per glottal cycle.
    cycles = int(np.sum(f0) / SAMPLE_RATE) + 8
    jittered = f0 * (1 + speaker.jitter * rng.standard_normal(cycles))[np.cumsum(f0 / SAMPLE_RATE).astype(int)]
    phase = np.cumsum(jittered / SAMPLE_RATE)
    cycle = np.minimum(phase.astype(int), cycles - 1)
    flow = _glottal_flow(phase - cycle, speaker.open_quotient)
    pulses = np.diff(flow, prepend=0.0) * (1 + speaker.shimmer * rng.standard_normal(cycles))[cycle]
    pulses = scipy.signal.lfilter([1 - speaker.darkness], [1, -speaker.darkness], pulses)
    # Aspiration: noise strongest while the glottis is open.
    aspiration = np.diff(rng.standard_normal(n + 1)) * (0.25 + flow)
    source = pulses / (np.std(pulses) + 1e-9) + speaker.breathiness * aspiration / (np.std(aspiration) + 1e-9)
    gain = _to_samples(uniform_filter1d(plan.voicing * plan.amplitude, 3, mode="nearest"), n)
    formants = uniform_filter1d(plan.formants, 4, axis=0, mode="nearest")  # 40 ms transitions
    voiced = _filter_frames(source * gain, _vocal_tract(formants, plan.bandwidths))
    voiced /= np.sqrt(np.mean(voiced ** 2)) + 1e-9
    frication = _to_samples(uniform_filter1d(plan.frication, 2, axis=0, mode="nearest"), n)
    white = rng.standard_normal(n)
    noise = sum(scipy.signal.sosfilt(_butter(2, band, "bandpass"), white) * frication[:, k]
                for k, band in enumerate(_FRICATIVE_BANDS))
    audio = voiced + 0.6 * noise
    audio *= 0.05 / (np.sqrt(np.mean(audio ** 2)) + 1e-9)
    voicing = _to_samples(plan.voicing, n)
    return DrySpeech(audio=audio, f0=f0, voiced=voicing > 0.5, speaker=speaker, plan=plan)


def speak(speaker: Speaker, n_samples: int, rng: np.random.Generator) -> DrySpeech:
    """One new dry utterance of ``speaker``."""
    return render_speech(speaker, plan_speech(speaker, n_samples, rng), rng)


# ------------------------------------------------------------------------------------------------- channel


def apply_channel(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Room, equaliser, background noise and level: the same random nuisance for both classes."""
    n = len(x)
    if rng.random() < 0.3:  # a small room: direct path plus an exponentially decaying tail
        rt60 = rng.uniform(0.12, 0.45)
        t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
        tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
        tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # first reflections arrive after the direct sound
        tail *= 10 ** (-rng.uniform(8, 25) / 20) / (np.sqrt(np.sum(tail ** 2)) + 1e-9)  # direct-to-reverb
        tail[0] = 1.0
        x = scipy.signal.fftconvolve(x, tail)[:n]
    # Equaliser: a high-pass (microphone / handset) and a first-order spectral tilt.
    x = scipy.signal.sosfilt(_butter(2, float(rng.integers(4, 16) * 10), "highpass"), x)
    tilt = rng.uniform(-0.2, 0.2)
    x = scipy.signal.lfilter([1, -tilt], [1], x) / (1 + abs(tilt))
    # Background noise with a random colour (pink .. brown), at an SNR measured on the active speech.
    freqs = np.maximum(scipy.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
    noise = scipy.fft.irfft(scipy.fft.rfft(rng.standard_normal(n)) * freqs ** (-rng.uniform(0.5, 1.0)), n)
    frame_power = np.mean(x[: n // FRAME * FRAME].reshape(-1, FRAME) ** 2, axis=1)
    speech_power = np.mean(frame_power[frame_power > 0.1 * frame_power.max()])
    snr_db = rng.uniform(30, 60)
    x = x + noise * np.sqrt(speech_power / 10 ** (snr_db / 10) / (np.mean(noise ** 2) + 1e-20))
    # Level: -32..-20 dBFS RMS, never clipping.
    x *= 10 ** (rng.uniform(-32, -20) / 20) / (np.sqrt(np.mean(x ** 2)) + 1e-12)
    return x * min(1.0, 0.98 / (np.max(np.abs(x)) + 1e-12))


# ------------------------------------------------------------------------------------------------- attacks


def _frame_track(per_sample: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """Per-sample values at the centres of ``n_frames`` frames ``hop`` apart."""
    return per_sample[np.minimum(np.arange(n_frames) * hop, len(per_sample) - 1)]


def _cepstral_envelope(magnitude: np.ndarray, lifter: int) -> np.ndarray:
    """Smooth spectral envelope (bins, frames) of a magnitude spectrogram by keeping ``lifter`` cepstral terms."""
    cepstrum = scipy.fft.irfft(np.log(magnitude + 1e-7), axis=0)
    cepstrum[lifter:-lifter] = 0.0
    return np.exp(scipy.fft.rfft(cepstrum, axis=0).real)


def _over_smooth(y: np.ndarray, strength: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """What statistical acoustic models do to a spectral envelope: formant peaks and valleys flattened towards
    the spectral tilt, and detail over time averaged away (the 'global variance' shrinks); fine structure stays."""
    spec = _stft(y, n_fft, hop)
    envelope = np.log(_cepstral_envelope(np.abs(spec), 30))
    tilt = np.log(_cepstral_envelope(np.abs(spec), 3))
    flattened = tilt + (envelope - tilt) * (1 - _by_strength(0.15, 0.5, strength))
    smoothed = uniform_filter1d(flattened, 5 + 2 * round(4 * strength), axis=1)  # 40-100 ms
    gain = np.exp(np.clip(smoothed - envelope, -2.0, 2.0))  # bounded: silence next to speech is not blown up
    return _match_rms(_istft(spec * gain, hop, len(y)), y)


def _excitation(speech: DrySpeech, rng: np.random.Generator) -> np.ndarray:
    """Classic vocoder excitation of unit power: impulses at a smooth (jitter-free) F0 where voiced, else noise."""
    phase = np.cumsum(speech.f0 / SAMPLE_RATE)
    pulses = np.zeros_like(speech.f0)
    pulses[1:][np.diff(np.floor(phase)) > 0] = 1.0
    pulses *= np.sqrt(SAMPLE_RATE / speech.f0)  # one impulse per period -> unit power at any F0
    return np.where(speech.voiced, pulses, rng.standard_normal(len(pulses)))


@lru_cache(maxsize=32)
def _mel_round_trip(n_fft: int, n_mels: int) -> np.ndarray:
    """Linear -> mel -> linear (pseudo-inverse) matrix: what a mel-spectrogram TTS keeps of a spectrum."""
    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=n_mels, dtype=np.float64)
    return np.linalg.pinv(mel) @ mel


def _by_strength(weakest: float, strongest: float, strength: float) -> float:
    return weakest + strength * (strongest - weakest)


def griffin_lim(speech: DrySpeech, strength: float, rng: np.random.Generator, n_mels: tuple[int, int],
                n_fft: int, hop: int, iterations: tuple[int, int]) -> np.ndarray:
    """Magnitude through a mel filterbank -> phase by fast Griffin-Lim: smeared spectral detail, phase artefacts.

    ``n_mels`` and ``iterations`` are (weakest, strongest) settings; fewer bands and iterations are stronger.
    """
    x = speech.audio
    bands = 8 * round(_by_strength(*n_mels, strength) / 8)  # multiples of 8 keep the filterbank cache small
    magnitude = np.maximum(_mel_round_trip(n_fft, bands) @ np.abs(_stft(x, n_fft, hop)), 0.0)
    momentum = 0.99
    angles = np.exp(2j * np.pi * rng.random(magnitude.shape))
    previous = 0.0
    for _ in range(round(_by_strength(*iterations, strength))):
        rebuilt = _stft(_istft(magnitude * angles, hop, len(x)), n_fft, hop)
        angles = rebuilt - momentum / (1 + momentum) * previous  # the "fast" variant's extrapolation
        angles /= np.abs(angles) + 1e-12
        previous = rebuilt
    return _match_rms(_istft(magnitude * angles, hop, len(x)), x)


def _lpc(frames: np.ndarray, order: int) -> np.ndarray:
    """LPC polynomials (frames, order+1) by the autocorrelation method, Levinson-Durbin vectorised over frames."""
    spectrum = scipy.fft.rfft(frames * _hann(frames.shape[1]), 2 * frames.shape[1], axis=1)
    r = scipy.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : order + 1]
    r[:, 0] = r[:, 0] * (1.0 + 1e-6) + 1e-12  # white-noise correction keeps near-silent frames stable
    a = np.zeros((len(frames), order + 1))
    a[:, 0] = 1.0
    error = r[:, 0].copy()
    for i in range(1, order + 1):
        k = -np.sum(a[:, :i] * r[:, i:0:-1], axis=1) / error
        a[:, 1:i + 1] += k[:, None] * a[:, i - 1::-1]
        error *= 1 - k ** 2
    return a * 0.994 ** np.arange(order + 1)  # bandwidth expansion: no pole right at the unit circle


def lpc_vocoder(speech: DrySpeech, strength: float, rng: np.random.Generator) -> np.ndarray:
    """LPC analysis, then resynthesis from pulse-train / noise excitation: buzzy, too-regular voicing."""
    x = speech.audio
    order = round(_by_strength(20, 10, strength)) + int(rng.integers(-1, 2))  # low orders blur the formants
    inverse = scipy.fft.rfft(_lpc(_frames(x, 400, FRAME), order), _TRACT_FFT, axis=1)
    residual = _filter_frames(x, inverse)
    excitation = _excitation(speech, rng) * _moving_rms(residual, 320)
    mix = 0.8 + 0.2 * strength  # weak attacks keep part of the true residual
    return _over_smooth(_filter_frames(mix * excitation + (1 - mix) * residual, 1 / inverse), strength)


def harmonic_resynthesis(speech: DrySpeech, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Sum of sinusoids at exact multiples of a smooth F0, noise above a cut-off: no aperiodicity in voicing."""
    x, n_fft, hop = speech.audio, 1024, 160
    spec = _stft(x, n_fft, hop)
    n_frames = spec.shape[1]
    magnitude = np.abs(spec) * 2 / np.sum(_hann(n_fft))
    f0 = _frame_track(speech.f0, hop, n_frames)
    voiced = _frame_track(speech.voiced, hop, n_frames).astype(float)
    max_voiced_hz = _by_strength(6500, 3500, strength)
    fundamental = np.exp(1j * (2 * np.pi * np.cumsum(speech.f0 / SAMPLE_RATE) + rng.uniform(0, 2 * np.pi)))
    harmonic = np.ones_like(fundamental)
    harmonics = np.zeros(len(x))
    for k in range(1, int(max_voiced_hz / speech.f0.min()) + 1):
        harmonic = harmonic * fundamental  # exp(i k phase), by recursion: cheaper than k cosines
        bins = np.minimum(np.round(k * f0 * n_fft / SAMPLE_RATE).astype(int), n_fft // 2)
        amplitude = magnitude[bins, np.arange(n_frames)] * voiced * (k * f0 < max_voiced_hz)
        harmonics += _to_samples(amplitude, len(x), hop) * harmonic.real
    # Noise carries the unvoiced frames and the band above the voiced cut-off, shaped by a smooth envelope.
    freqs = scipy.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)[:, None]
    noise_gain = np.maximum(1 - voiced[None, :], freqs > max_voiced_hz)
    noise_spec = _stft(rng.standard_normal(len(x)), n_fft, hop) / np.sqrt(np.sum(_hann(n_fft) ** 2))
    noise = _istft(noise_spec * _cepstral_envelope(np.abs(spec), 40) * noise_gain, hop, len(x))
    return _over_smooth(_match_rms(harmonics + noise, x), strength)


def codec(speech: DrySpeech, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Band limit plus mu-law quantisation, like a narrow-band transmission leg: missing high band, grainy."""
    band_limit = _butter(8, float(round(7600 - 3400 * strength, -2)), "lowpass")
    y = scipy.signal.sosfilt(band_limit, speech.audio)
    peak = np.max(np.abs(y)) / rng.uniform(0.3, 0.9)  # the codec's input level varies
    mu, levels = 255.0, 2 ** (int(round(11 - 3 * strength)) - 1)
    compressed = np.round(np.sign(y) * np.log1p(mu * np.abs(y) / peak) / np.log1p(mu) * levels) / levels
    decoded = np.sign(compressed) * np.expm1(np.abs(compressed) * np.log1p(mu)) / mu * peak
    return scipy.signal.sosfilt(band_limit, decoded)  # the decoder's reconstruction filter


def envelope_noise_vocoder(speech: DrySpeech, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Keep the low band; above a cut-off, noise with an over-smoothed envelope (fast neural vocoder-like)."""
    x, n_fft, hop = speech.audio, 512, 128
    spec = _stft(x, n_fft, hop)
    smoothing = 3 + 2 * int(3 * strength)  # frames of 8 ms: onsets and offsets smear
    lifter = round(_by_strength(20, 8, strength))
    envelope = uniform_filter1d(_cepstral_envelope(np.abs(spec), lifter), smoothing, axis=1)
    cutoff = _by_strength(5000, 2000, strength)
    keep = np.clip((cutoff + 250 - scipy.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)) / 500, 0.0, 1.0)[:, None]
    gain = 10 ** (rng.choice([-1, 1]) * _by_strength(2, 8, strength) / 20)  # the noise band's level is off
    noise = gain * np.exp(2j * np.pi * rng.random(spec.shape))
    return _match_rms(_istft(keep * spec + (1 - keep) * envelope * noise, hop, len(x)), x)


@lru_cache(maxsize=4)
def _mel_to_linear(n_fft: int, n_mels: int) -> np.ndarray:
    """(bins, n_mels) matrix interpolating values at mel band centres onto linear STFT bins."""
    centres = librosa.mel_frequencies(n_mels + 2, fmax=SAMPLE_RATE / 2)[1:-1]
    return np.stack([np.interp(scipy.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE), centres, row) for row in np.eye(n_mels)],
                    axis=1)


def mfcc_vocoder(speech: DrySpeech, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Envelope from a few MFCCs, excited by a pulse train or noise in the STFT domain: smeared formants."""
    x, n_fft, hop = speech.audio, 512, 80
    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=64, dtype=np.float64)
    cepstrum = scipy.fft.dct(np.log(mel @ np.abs(_stft(x, n_fft, hop)) ** 2 + 1e-10), axis=0, norm="ortho")
    cepstrum[int(round(30 - 16 * strength)):] = 0.0
    mel_envelope = np.exp(0.5 * scipy.fft.idct(cepstrum, axis=0, norm="ortho"))
    envelope = _mel_to_linear(n_fft, 64) @ mel_envelope
    excitation = _stft(_excitation(speech, rng), n_fft, hop)
    excitation /= np.sqrt(np.mean(np.abs(excitation) ** 2, axis=0, keepdims=True)) + 1e-9
    return _over_smooth(_match_rms(_istft(excitation * envelope, hop, len(x)), x), strength)


def _session_colour(x: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Another recording session: a spectral tilt and a broad peak or dip (RBJ peaking equaliser) of its own."""
    tilt = rng.uniform(-spread, spread) * 0.2
    x = scipy.signal.lfilter([1, -tilt], [1], x)
    gain, w0 = 10 ** (rng.uniform(-spread, spread) * 2.5 / 40), 2 * np.pi * rng.uniform(800, 5000) / SAMPLE_RATE
    alpha = np.sin(w0) / (2 * 0.8)
    return scipy.signal.lfilter([1 + alpha * gain, -2 * np.cos(w0), 1 - alpha * gain],
                                [1 + alpha / gain, -2 * np.cos(w0), 1 - alpha / gain], x)


def concatenation(speech: DrySpeech, strength: float, rng: np.random.Generator, takes: int,
                  unit_ms: tuple[float, float], crossfade_ms: float, misalign_ms: float) -> np.ndarray:
    """Units cut from several takes of the same text and joined: F0, timbre and level jumps at the joins."""
    x = speech.audio
    spread = 1.0 + 2.0 * strength  # between takes: semitones of F0, dB of level, 4 %'s of formant scale
    sources = [x]
    for _ in range(takes - 1):
        plan = replace(speech.plan, formants=speech.plan.formants * (1 + rng.uniform(-spread, spread) / 25))
        take = render_speech(speech.speaker, plan, rng, f0_shift_st=rng.uniform(-spread, spread)).audio
        take = _session_colour(take, spread, rng)
        sources.append(_match_rms(take, x) * 10 ** (rng.uniform(-spread, spread) / 20))
    bounds = [0]
    while bounds[-1] < len(x):
        bounds.append(bounds[-1] + int(rng.uniform(*unit_ms) * SAMPLE_RATE / 1000))
    bounds[-1] = len(x)
    fade = int(crossfade_ms * (1 - strength) * SAMPLE_RATE / 1000)
    y = np.empty_like(x)
    take, previous = 0, x
    for start, stop in zip(bounds[:-1], bounds[1:]):
        source = np.roll(sources[take], int(rng.uniform(-misalign_ms, misalign_ms) * SAMPLE_RATE / 1000))
        y[start:stop] = source[start:stop]
        if fade and start > 0:
            ramp = np.linspace(0, 1, min(fade, stop - start))
            joint = slice(start, start + len(ramp))
            y[joint] = ramp * source[joint] + (1 - ramp) * previous[joint]
        previous = source
        take = (take + int(rng.integers(1, takes))) % takes
    return y


def resample_aliasing(speech: DrySpeech, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Made at 8 kHz behind a leaky anti-alias filter, then upsampled to 16 kHz: no high band, and what lay
    between 4 kHz and the filter's cut-off folded back into the low band."""
    x = speech.audio
    cutoff = float(round(_by_strength(3900, 7400, strength), -2))
    low = scipy.signal.sosfilt(_butter(6, cutoff, "lowpass"), x)[int(rng.integers(2))::2]
    y = scipy.signal.resample_poly(low, 2, 1)
    return np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]


def pitch_shift_vc(speech: DrySpeech, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Voice conversion by phase-vocoder pitch shifting: phasiness, smeared transients, shifted formants."""
    x, n_fft, hop = speech.audio, 1024, 256
    ratio = 2 ** ((0.5 + 3.0 * strength) * rng.choice([-1, 1]) / 12)
    stretched = librosa.phase_vocoder(_stft(x, n_fft, hop), rate=1 / ratio, hop_length=hop, n_fft=n_fft)
    y = _istft(stretched, hop, (stretched.shape[1] - 1) * hop)
    return _match_rms(scipy.signal.resample(y, len(x)), x)


def upsampler_artefacts(speech: DrySpeech, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Neural-vocoder output (noisy high band) with transposed-convolution fingerprints: frame-rate
    modulation and faint tonal lines."""
    x = envelope_noise_vocoder(speech, strength, rng)
    n = np.arange(len(x))
    hop = int(rng.choice([160, 200, 256]))
    modulation = 1 + (0.03 + 0.15 * strength) * np.cos(2 * np.pi * n / hop + rng.uniform(0, 2 * np.pi))
    factor = int(rng.choice([8, 16]))  # tones at multiples of the sample rate over the last upsampling factor
    tones = sum(np.cos(2 * np.pi * k * n / factor + rng.uniform(0, 2 * np.pi)) for k in range(1, factor // 2))
    level = 10 ** ((-44 + 16 * strength) / 20)
    return x * modulation + level * _moving_rms(x, 400) * tones


def frequency_warp_vc(speech: DrySpeech, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Voice conversion by warping the spectral envelope along frequency, over-smoothed in time (as statistical
    conversion does), on the original harmonics and phase."""
    x, n_fft, hop = speech.audio, 512, 128
    spec = _stft(x, n_fft, hop)
    magnitude = np.abs(spec)
    envelope = _cepstral_envelope(magnitude, 30)
    alpha = 1 + (0.04 + 0.10 * strength) * rng.choice([-1, 1])
    position = np.arange(spec.shape[0]) / alpha  # output bin k takes the envelope at bin k / alpha
    lower = np.minimum(position.astype(int), spec.shape[0] - 2)
    frac = np.minimum(position - lower, 1.0)[:, None]
    warped = (1 - frac) * envelope[lower] + frac * envelope[lower + 1]
    return _over_smooth(_match_rms(_istft(spec / (envelope + 1e-9) * warped, hop, len(x)), x), strength)


@dataclass(frozen=True)
class Attack:
    """One spoofing system: its pipeline and the artefact it leaves."""

    attack_id: str
    pipeline: str
    artefact: str
    seen: bool  # in train and dev (and eval); unseen attacks appear only in eval
    apply: Callable[[DrySpeech, float, np.random.Generator], np.ndarray] = field(repr=False)


ATTACKS: dict[str, Attack] = {a.attack_id: a for a in (
    Attack("A01", "52-24-band mel spectrogram -> Griffin-Lim (19-6 iterations)", "phase incoherence, smeared harmonics",
           True, partial(griffin_lim, n_mels=(80, 24), n_fft=1024, hop=256, iterations=(32, 6))),
    Attack("A02", "LPC (order 16-9) -> pulse-train / noise excitation (90-100 %), over-smoothed envelope",
           "buzzy, jitter-free voicing, flattened formants",
           True, lpc_vocoder),
    Attack("A03", "sinusoids at multiples of a smooth F0 up to 5-3.5 kHz + envelope-shaped noise, over-smoothed",
           "no aperiodicity, hard V/UV, flattened formants",
           True, harmonic_resynthesis),
    Attack("A04", "low-pass 5.9-4.2 kHz + mu-law 10-8 bit", "missing high band, quantisation noise",
           True, codec),
    Attack("A05", "low band kept, random-phase noise above 3.5-2 kHz with a time-smoothed envelope, 5-8 dB off in "
           "level",
           "noisy, over-smooth high band", True, envelope_noise_vocoder),
    Attack("A06", "two takes joined every 50-180 ms with 2-0 ms cross-fades",
           "F0 / formant / colour / level jumps at joins",
           True, partial(concatenation, takes=2, unit_ms=(50, 180), crossfade_ms=4.0, misalign_ms=0.0)),
    Attack("A07", "8 kHz behind a leaky anti-alias filter (5.7-7.4 kHz) -> polyphase upsampling",
           "empty high band, aliasing folded into the low band",
           False, resample_aliasing),
    Attack("A08", "phase-vocoder pitch shift (2-3.5 semitones)", "phasiness, shifted formants",
           False, pitch_shift_vc),
    Attack("A09", "88-48-band mel, other framing -> Griffin-Lim (9-2 iterations) (kin of A01)",
           "phase incoherence", False, partial(griffin_lim, n_mels=(128, 48), n_fft=640, hop=160, iterations=(16, 2))),
    Attack("A10", "22-14 MFCC envelope x pulse / noise excitation (STFT domain), over-smoothed",
           "smeared formants, buzz",
           False, mfcc_vocoder),
    Attack("A11", "A05-like noisy high band + frame-rate modulation + tones at multiples of fs/8 or fs/16",
           "upsampling fingerprints",
           False, upsampler_artefacts),
    Attack("A12", "spectral envelope warped by 9-14 %, then over-smoothed; original harmonics and phase",
           "shifted, over-smoothed formants",
           False, frequency_warp_vc),
    Attack("A13", "three takes joined every 30-120 ms, no cross-fade, misaligned by up to 4 ms (kin of A06)",
           "clicks, F0 / timbre jumps", False,
           partial(concatenation, takes=3, unit_ms=(30, 120), crossfade_ms=0.0, misalign_ms=4.0)),
)}
SEEN_ATTACKS = tuple(a for a, attack in ATTACKS.items() if attack.seen)


def synthesise(speaker: Speaker, n_samples: int, attack_id: str | None, rng: np.random.Generator) -> np.ndarray:
    """One finished utterance: new speech, the attack (None = bona fide), then the channel."""
    speech = speak(speaker, n_samples, rng)
    audio = speech.audio
    if attack_id is not None:
        strength = rng.uniform(0.5, 1.0)
        audio = ATTACKS[attack_id].apply(speech, strength, rng)
    return apply_channel(audio, rng)


# ------------------------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to write one file (picklable)."""

    path: Path
    speaker: Speaker
    n_samples: int
    attack_id: str | None
    entropy: tuple[int, ...]


@dataclass(frozen=True)
class _Entry:
    subset: str
    speaker_id: str
    utt_id: str
    attack_id: str | None

    def protocol_line(self) -> str:
        if self.attack_id is None:
            return f"{self.speaker_id} {self.utt_id} - - bonafide"
        return f"{self.speaker_id} {self.utt_id} - {self.attack_id} spoof"


def protocol_path(root: Path, subset: str) -> Path:
    """Where the ASVspoof 2019 LA protocol of ``subset`` lives under a corpus ``root``."""
    return root / "LA" / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{_PROTOCOL_SUFFIX[subset]}.txt"


def audio_dir(root: Path, subset: str) -> Path:
    """The folder holding ``subset``'s FLAC files."""
    return root / "LA" / f"ASVspoof2019_LA_{subset}" / "flac"


def _plan_corpus(root: Path, profile: Profile, seed: int) -> tuple[list[_Entry], list[_Job]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    entries, jobs = [], []
    next_speaker = 1
    for s, subset in enumerate(SUBSETS):
        speakers = [make_speaker(f"LA_{next_speaker + i:04d}", female=i % 2 == 1, rng=rng)
                    for i in range(profile.speakers[subset])]
        next_speaker += len(speakers)
        n_bonafide, n_spoof = profile.utterances[subset]
        attacks = tuple(ATTACKS) if subset == "eval" else SEEN_ATTACKS
        labels = [None] * n_bonafide + [attacks[i % len(attacks)] for i in range(n_spoof)]
        labels = [labels[i] for i in rng.permutation(len(labels))]
        low, high = (int(round(sec * SAMPLE_RATE)) for sec in profile.seconds)
        for i, attack_id in enumerate(labels):
            speaker = speakers[rng.integers(len(speakers))]
            utt_id = f"LA_{_SUBSET_LETTER[subset]}_{i + 1:07d}"
            n_samples = int(rng.integers(low, high + 1)) // FRAME * FRAME
            entries.append(_Entry(subset, speaker.speaker_id, utt_id, attack_id))
            jobs.append(_Job(audio_dir(root, subset) / f"{utt_id}.flac", speaker, n_samples, attack_id,
                             (seed, s + 1, i)))
    return entries, jobs


def _write_audio(job: _Job) -> None:
    rng = np.random.default_rng(np.random.SeedSequence(list(job.entropy)))
    audio = synthesise(job.speaker, job.n_samples, job.attack_id, rng)
    tmp = job.path.with_name(f".{job.path.name}.tmp{os.getpid()}")
    sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp, job.path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


_PARALLEL_FROM = 200  # fewer files are written faster in this process than by starting workers


def _run_jobs(jobs: list, description: str, work: Callable = _write_audio, parallel_from: int = _PARALLEL_FROM,
              chunksize: int = 8) -> list:
    """``work`` on every job (by default: write its file), on all cores when there are enough jobs to pay for
    starting workers; returns the results in job order. ``work`` must be a module-level function (picklable)."""
    workers = min(len(os.sched_getaffinity(0)), 8) if len(jobs) >= parallel_from else 1
    console = Console(stderr=True)
    # One line at once, whatever stderr is: writing a corpus takes minutes and must not look hung.
    console.print(f"{description}: {len(jobs):,} files on {workers} process{'es' if workers > 1 else ''}",
                  highlight=False)
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=len(jobs))
        if workers == 1:
            done: Iterator = map(work, jobs)
            for result in done:
                results.append(result)
                progress.advance(task)
            return results
        # spawn, not fork: the caller may hold torch / OpenMP threads that a forked child would inherit broken.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for result in pool.map(work, jobs, chunksize=chunksize):
                results.append(result)
                progress.advance(task)
    return results


def _stamp(profile_name: str, seed: int, entries: list[_Entry]) -> dict:
    counts = {subset: {"bonafide": sum(e.subset == subset and e.attack_id is None for e in entries),
                       "spoof": sum(e.subset == subset and e.attack_id is not None for e in entries)}
              for subset in SUBSETS}
    return {"profile": profile_name, "seed": seed, "generator_version": GENERATOR_VERSION,
            "sample_rate": SAMPLE_RATE, "utterances": counts,
            "attacks": {a.attack_id: {"seen": a.seen, "pipeline": a.pipeline, "artefact": a.artefact}
                        for a in ATTACKS.values()}}


def is_complete(out: Path, profile: str, seed: int) -> bool:
    """Whether ``out`` already holds a finished corpus of this profile, seed and generator version."""
    try:
        stamp = json.loads((Path(out) / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (stamp.get("profile"), stamp.get("seed"), stamp.get("generator_version")) == (
        profile, seed, GENERATOR_VERSION)


def write_corpus(out: Path, profile: str = "tiny", seed: int = 42, force: bool = False) -> Path:
    """Write the embedded corpus under ``out`` in the ASVspoof 2019 LA layout and return the corpus root.

    ``out/LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt`` list
    ``SPEAKER UTT - ATTACK KEY``; audio is ``out/LA/ASVspoof2019_LA_{train,dev,eval}/flac/<UTT>.flac``
    (16 kHz, 16-bit). The same profile and seed give the same bytes. A corpus is finished when its stamp
    (``plastispoof_synth.json``, written last) is there: then this returns at once. A half-written corpus, or one
    of an older generator, is rewritten; a finished corpus of another profile or seed is refused unless ``force``.
    """
    if profile not in PROFILES:
        raise InputError(f"unknown corpus profile {profile!r}; known: {', '.join(sorted(PROFILES))}")
    root = Path(out)
    if is_complete(root, profile, seed):
        return root
    try:
        stamp = json.loads((root / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = None
    if stamp and (stamp.get("profile"), stamp.get("seed")) != (profile, seed) and not force:
        raise InputError(f"{root} holds the {stamp.get('profile')} corpus of seed {stamp.get('seed')}; writing the "
                         f"{profile} corpus of seed {seed} there would replace it: choose another --out, or --force")
    stamp_path = root / STAMP_NAME
    stamp_path.unlink(missing_ok=True)
    entries, jobs = _plan_corpus(root, PROFILES[profile], seed)
    for subset in SUBSETS:
        audio_dir(root, subset).mkdir(parents=True, exist_ok=True)
        protocol_path(root, subset).parent.mkdir(parents=True, exist_ok=True)
    _run_jobs(jobs, f"synth {profile}")
    for subset in SUBSETS:
        lines = [e.protocol_line() for e in entries if e.subset == subset]
        _write_text(protocol_path(root, subset), "\n".join(lines) + "\n")
        _remove_stale_audio(audio_dir(root, subset), {f"{e.utt_id}.flac" for e in entries if e.subset == subset})
    _write_text(stamp_path, json.dumps(_stamp(profile, seed, entries), indent=1) + "\n")
    return root


_OWN_FILE = re.compile(r"^(LA_[TDE]_\d{7}\.flac|\.LA_[TDE]_\d{7}\.flac\.tmp\d+)$")


def _remove_stale_audio(folder: Path, keep: set[str]) -> None:
    """Delete files this module wrote earlier (a bigger profile, a crashed run) that the new corpus does not list."""
    for path in folder.iterdir():
        if _OWN_FILE.match(path.name) and path.name not in keep:
            path.unlink()
