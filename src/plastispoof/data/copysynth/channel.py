"""The one channel every utterance of a copy-synthesis corpus passes through, bona fide and spoof alike.

Resampling to 16 kHz, one band-pass, silence trimming and one level: a detector cannot tell the classes apart
by bandwidth, DC, loudness or leading silence, only by what the vocoder or TTS engine did. The band-pass' upper
edge follows the narrowest bona fide source (8 kHz telephone prompts have nothing above 4 kHz, so a vocoder's
or TTS engine's high band would otherwise give the spoofs away).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import librosa
import numpy as np
import scipy.signal
import soxr

from plastispoof.data.synthetic import SAMPLE_RATE


@dataclass(frozen=True)
class Channel:
    """Settings of the shared channel (stored in the corpus manifest)."""

    low_hz: float = 70.0
    high_hz: float = 7600.0
    order: int = 8  # Butterworth band-pass order (applied forward and backward: zero phase, twice the slope)
    level_dbfs: float = -26.0  # RMS of every finished utterance
    trim_db: float = 40.0  # frames this far below the loudest frame count as silence at the ends
    margin_s: float = 0.05  # silence kept before and after the speech

    @classmethod
    def for_sources(cls, lowest_rate: int) -> "Channel":
        """The channel for bona fide sources whose lowest sample rate is ``lowest_rate``: the band-pass stops at
        95 % of that rate's Nyquist frequency (or 7.6 kHz)."""
        return cls(high_hz=float(min(7600.0, round(0.475 * lowest_rate, -1))))

    def as_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def resample(audio: np.ndarray, rate: int) -> np.ndarray:
        """``audio`` at ``rate`` -> float64 at 16 kHz (soxr, high quality)."""
        x = np.asarray(audio, dtype=np.float64)
        return soxr.resample(x, rate, SAMPLE_RATE, quality="HQ") if rate != SAMPLE_RATE else x

    def __call__(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """``audio`` at ``rate`` -> the finished 16 kHz utterance (float64, RMS at ``level_dbfs``, peak < 1)."""
        x = self.resample(audio, rate)
        band = scipy.signal.butter(self.order // 2, (self.low_hz, self.high_hz), btype="bandpass", fs=SAMPLE_RATE,
                                   output="sos")
        x = scipy.signal.sosfiltfilt(band, x)
        _, (start, stop) = librosa.effects.trim(x, top_db=self.trim_db, frame_length=512, hop_length=128)
        margin = int(self.margin_s * SAMPLE_RATE)
        x = x[max(0, start - margin): stop + margin]
        x = x * 10 ** (self.level_dbfs / 20) / (np.sqrt(np.mean(x ** 2)) + 1e-12)
        peak = np.max(np.abs(x)) if x.size else 0.0
        return x * min(1.0, 0.98 / peak) if peak else x
