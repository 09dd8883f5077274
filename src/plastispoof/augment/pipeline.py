"""The seeded augmentation chain applied to a training crop.

:class:`AugmentPipeline` applies each configured augmentation in order, each with its probability. All random
draws of augmentation ``k`` come from ``np.random.default_rng((*key, k))`` where ``key`` is the caller's
``(seed, epoch, index)``: the same crop of the same epoch gets the same audio whichever worker makes it, in
whatever order, and a resumed run sees what an uninterrupted one saw. Whether augmentation ``k`` fires does not
shift the random numbers of the others.

Telephone band: an 8 kHz round trip (soxr), then the 300-3400 Hz band-pass (4th-order Butterworth, zero phase).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import soxr
from pydantic import TypeAdapter, ValidationError
from scipy.signal import butter, sosfiltfilt

from plastispoof.augment import codecs
from plastispoof.augment.config import (
    AugmentList,
    AugmentOptions,
    CodecOptions,
    GainOptions,
    NoiseOptions,
    RawBoostOptions,
    ReverbOptions,
    TelephoneOptions,
)
from plastispoof.augment.noise import COLOURS, NoiseBank, add_at_snr, coloured_noise, noise_files
from plastispoof.augment.rawboost import RawBoostParams, rawboost
from plastispoof.augment.reverb import generated_rir, reverberate, rir_files
from plastispoof.errors import InputError

Augmenter = Callable[[np.ndarray, np.random.Generator], np.ndarray]
TELEPHONE_BAND = (300.0, 3400.0)


def telephone_band(x: np.ndarray, sample_rate: int, bandpass: bool = True) -> np.ndarray:
    """``x`` resampled to 8 kHz and back (nothing above 4 kHz survives), optionally band-passed 300-3400 Hz."""
    narrow = soxr.resample(x, sample_rate, 8000, quality="HQ")
    if bandpass:
        narrow = sosfiltfilt(butter(4, TELEPHONE_BAND, btype="bandpass", fs=8000, output="sos"), narrow)
    y = soxr.resample(narrow, 8000, sample_rate, quality="HQ")
    return codecs._fit(np.asarray(y, dtype=np.float32), x.size)


def make_augmenter(options: AugmentOptions, sample_rate: int) -> Augmenter:
    """The function ``(crop, rng) -> augmented crop`` of one augmentation's options."""
    if isinstance(options, RawBoostOptions):
        params = RawBoostParams(snr_min=options.snr_db[0], snr_max=options.snr_db[1], p=options.p_impulsive)
        return lambda x, rng: rawboost(x, rng, sample_rate, options.algorithms, options.combine, params)
    if isinstance(options, CodecOptions):
        names = options.codecs or codecs.available_codecs()

        def codec(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            name = names[int(rng.integers(len(names)))]
            rates = codecs.CODECS[name].bitrates
            bitrate = int(rates[int(rng.integers(len(rates)))]) if rates else None
            return codecs.codec_round_trip(x, sample_rate, name, bitrate)
        return codec
    if isinstance(options, TelephoneOptions):
        return lambda x, rng: telephone_band(x, sample_rate, options.bandpass)
    if isinstance(options, NoiseOptions):
        bank = NoiseBank(noise_files(options.folder, tuple(options.categories)), sample_rate) \
            if options.folder else None

        def noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            snr = rng.uniform(*options.snr_db)
            if bank is not None:
                return add_at_snr(x, bank.draw(x.size, rng), snr)
            colour = options.colours[int(rng.integers(len(options.colours)))]
            return add_at_snr(x, coloured_noise(x.size, colour, rng), snr)
        return noise
    if isinstance(options, ReverbOptions):
        bank = NoiseBank(rir_files(options.folder), sample_rate) if options.folder else None

        def reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            if bank is not None:
                rir = bank.audio(int(rng.integers(len(bank.files))))
            else:
                rir = generated_rir(rng.uniform(*options.rt60), sample_rate, rng)
            return reverberate(x, rir)
        return reverb
    if isinstance(options, GainOptions):
        return lambda x, rng: (x * 10 ** (rng.uniform(*options.gain_db) / 20)).astype(np.float32)
    raise TypeError(f"no augmenter for {type(options).__name__}")


def parse_augment(entries: Sequence[Any], source: str = "augment") -> list[AugmentOptions]:
    """Options objects from dicts (or options objects); bad entries raise :class:`InputError` with the path."""
    try:
        return TypeAdapter(AugmentList).validate_python(list(entries))
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in (source, *first["loc"]))
        msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise InputError(f"{key}: {msg}") from None


class AugmentPipeline:
    """Augmentations in order, each applied with its probability, seeded by a caller's key."""

    def __init__(self, options: Sequence[Any], sample_rate: int = 16000):
        self.options = parse_augment(options)
        self.sample_rate = sample_rate
        self._augmenters: list[Augmenter] | None = None  # built on first use, inside each worker

    def __bool__(self) -> bool:
        return bool(self.options)

    def augmenters(self) -> list[Augmenter]:
        if self._augmenters is None:
            self._augmenters = [make_augmenter(o, self.sample_rate) for o in self.options]
        return self._augmenters

    def __call__(self, x: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
        """``x`` augmented for ``key`` (e.g. ``(seed, epoch, index)``): float32, same length, finite."""
        y = np.asarray(x, dtype=np.float32)
        for k, (options, augment) in enumerate(zip(self.options, self.augmenters())):
            rng = np.random.default_rng((*key, k))
            if rng.random() < options.p:
                y = augment(y, rng)
                if not np.isfinite(y).all():  # a finite input turned non-finite: a bug in that augmentation
                    raise RuntimeError(f"augmentation {options.name!r} made NaN or infinite samples (key {key}); "
                                       "this is a bug, please report it")
        return y.astype(np.float32, copy=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_augmenters": None}  # closures do not pickle; workers rebuild them


__all__ = ["AugmentPipeline", "COLOURS", "make_augmenter", "parse_augment", "telephone_band"]
