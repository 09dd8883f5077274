"""Options of each training augmentation (the ``data.augment`` list of an experiment config).

Each entry names its augmentation (``name``), the probability ``p`` that it is applied to a crop, and its
parameters; ranges are ``[low, high]`` pairs checked against sensible bounds, so a typo or an impossible value
fails when the config is read, with the key path (``data.augment.1.snr_db: ...``).

>>> from pydantic import TypeAdapter
>>> TypeAdapter(AugmentList).validate_python([{"name": "gain", "p": 0.5}])[0].gain_db
(-6.0, 6.0)
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0, description="probability that a crop gets it")]


class AugmentOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    p: Probability = 0.5


def _range(value: tuple[float, float], low: float, high: float, what: str) -> tuple[float, float]:
    first, last = value
    if not (low <= first <= last <= high):
        raise ValueError(f"{what} range [{first:g}, {last:g}] must be ordered and within [{low:g}, {high:g}]")
    return value


# An SNR range in dB, checked the same way wherever one is an option.
SnrRange = Annotated[tuple[float, float], AfterValidator(lambda value: _range(value, -10.0, 100.0, "SNR (dB)"))]


class RawBoostOptions(AugmentOptions):
    """RawBoost; the default is the paper's best for logical access: convolutive then impulsive, in series."""

    name: Literal["rawboost"] = "rawboost"
    algorithms: list[Literal["convolutive", "impulsive", "coloured"]] = Field(
        default_factory=lambda: ["convolutive", "impulsive"], min_length=1)
    combine: Literal["series", "parallel"] = "series"
    snr_db: SnrRange = Field((10.0, 40.0), description="coloured-noise SNR range (paper: 10-40 dB)")
    p_impulsive: float = Field(10.0, gt=0, le=100, description="max % of samples hit by impulsive noise")


class CodecOptions(AugmentOptions):
    """A round trip through one codec drawn from ``codecs`` at one of its bit rates."""

    name: Literal["codec"] = "codec"
    codecs: list[str] | None = Field(None, description="codec names; default: every one this machine has")

    @field_validator("codecs")
    @classmethod
    def _present(cls, value: list[str] | None) -> list[str] | None:
        from plastispoof.augment.codecs import CODECS, available_codecs

        for codec in value or []:
            if codec not in CODECS:
                raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")
            if codec not in available_codecs():
                raise ValueError(f"codec {codec!r} is missing from this machine's FFmpeg (PyAV); present: "
                                 f"{', '.join(available_codecs()) or 'none'}")
        if value is not None and not value:
            raise ValueError("name at least one codec, or leave codecs out for all present ones")
        return value


class TelephoneOptions(AugmentOptions):
    """An 8 kHz round trip, optionally with the 300-3400 Hz telephone band-pass."""

    name: Literal["telephone"] = "telephone"
    bandpass: bool = True


class NoiseOptions(AugmentOptions):
    """Additive noise at an SNR in ``snr_db``: files from ``folder`` (MUSAN layout) or generated ``colours``."""

    name: Literal["noise"] = "noise"
    snr_db: SnrRange = (5.0, 20.0)
    folder: str | None = Field(None, description="MUSAN-layout folder; generated noise when absent")
    categories: list[str] = Field(default_factory=lambda: ["noise"], description="MUSAN category folders")
    colours: list[Literal["white", "pink", "brown", "blue", "violet"]] = Field(
        default_factory=lambda: ["white", "pink", "brown", "blue", "violet"], min_length=1)


class ReverbOptions(AugmentOptions):
    """Convolution with an RIR from ``folder``, or a generated one with RT60 in ``rt60``."""

    name: Literal["reverb"] = "reverb"
    rt60: tuple[float, float] = Field((0.2, 1.0), description="seconds")
    folder: str | None = None

    @field_validator("rt60")
    @classmethod
    def _rt60(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _range(value, 0.05, 5.0, "RT60 (s)")


class GainOptions(AugmentOptions):
    name: Literal["gain"] = "gain"
    gain_db: tuple[float, float] = (-6.0, 6.0)

    @field_validator("gain_db")
    @classmethod
    def _gain(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _range(value, -60.0, 40.0, "gain (dB)")


AugmentEntry = Annotated[Union[RawBoostOptions, CodecOptions, TelephoneOptions, NoiseOptions, ReverbOptions,
                               GainOptions], Field(discriminator="name")]
AugmentList = list[AugmentEntry]
AUGMENTATIONS = ("rawboost", "codec", "telephone", "noise", "reverb", "gain")
