"""Training augmentation: each one changes the audio the way it should, seeded by (seed, epoch, index)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_run import tiny_config, write_tiny_corpus

from plastispoof import runs
from plastispoof.augment import codecs
from plastispoof.augment.noise import COLOURS, add_at_snr, coloured_noise
from plastispoof.augment.pipeline import AugmentPipeline, parse_augment, telephone_band
from plastispoof.augment.rawboost import RawBoostParams, convolutive_noise, impulsive_noise, rawboost
from plastispoof.augment.rawboost import coloured_noise as rawboost_coloured
from plastispoof.augment.reverb import generated_rir, measure_rt60, reverberate
from plastispoof.config import validate
from plastispoof.data.dataset import TrialDataset
from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.training import train

RATE = 16000


def speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A 200 Hz harmonic source under a 4 Hz syllable envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    source = sum(np.sin(2 * np.pi * 200 * k * t) / k for k in range(1, 15))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (0.2 * envelope * source + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((noisy - clean).astype(np.float64) ** 2))


def band_energy_db(x: np.ndarray, low: float, high: float) -> float:
    """Energy in [low, high) Hz relative to the whole signal's, in dB."""
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    return 10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum() + 1e-30)


# ------------------------------------------------------------------------------------------------ noise

@pytest.mark.parametrize("colour", sorted(COLOURS))
@pytest.mark.parametrize("target", [20.0, 5.0, -5.0])
def test_generated_noise_is_added_at_the_target_snr(colour, target):
    x = speechlike()
    y = add_at_snr(x, coloured_noise(x.size, colour, np.random.default_rng(1)), target)
    assert y.shape == x.shape and y.dtype == np.float32
    assert abs(snr_db(x, y) - target) < 0.5


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(0)
    low_minus_high = {c: band_energy_db(coloured_noise(RATE * 4, c, rng), 100, 1000)
                      - band_energy_db(coloured_noise(RATE * 4, c, rng), 4000, 7000) for c in COLOURS}
    # white: about equal per Hz -> the 900 Hz band holds less than the 3000 Hz band; brown the most at low f
    assert low_minus_high["violet"] < low_minus_high["blue"] < low_minus_high["white"] < \
        low_minus_high["pink"] < low_minus_high["brown"]


def musan_folder(root, n_files=2, seconds=0.3):
    rng = np.random.default_rng(3)
    for i in range(n_files):
        path = root / "noise" / "free-sound" / f"noise-{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * RATE))).astype(np.float32), RATE)
    (root / "music").mkdir()
    return root


@pytest.mark.parametrize("target", [10.0, 0.0])
def test_noise_from_a_musan_folder_hits_the_snr(tmp_path, target):
    folder = musan_folder(tmp_path / "musan")
    pipeline = AugmentPipeline([{"name": "noise", "p": 1.0, "snr_db": [target, target], "folder": str(folder)}])
    x = speechlike()
    y = pipeline(x, (1, 0, 0))
    assert abs(snr_db(x, y) - target) < 0.5


def test_an_empty_noise_or_rir_folder_is_one_clear_error(tmp_path):
    (tmp_path / "empty" / "noise").mkdir(parents=True)
    with pytest.raises(InputError, match="holds no audio files"):
        AugmentPipeline([{"name": "noise", "p": 1.0, "folder": str(tmp_path / "empty")}])(speechlike(), (0,))
    with pytest.raises(InputError, match="RIR folder .* holds no audio files"):
        AugmentPipeline([{"name": "reverb", "p": 1.0, "folder": str(tmp_path / "empty")}])(speechlike(), (0,))


# ------------------------------------------------------------------------------------------------ codecs

@pytest.mark.parametrize("codec", codecs.available_codecs())
def test_codec_round_trip_keeps_length_rate_and_timing(codec):
    x = speechlike(0.75)
    spec = codecs.CODECS[codec]
    y = codecs.codec_round_trip(x, RATE, codec, spec.bitrates[-1] if spec.bitrates else None)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert not np.array_equal(x, y)
    # Same rate: the 200 Hz fundamental is still the strongest line. Same timing: the cross-correlation peaks at
    # lag 0 (1 sample at most: CELP / ADPCM / Opus keep the waveform only roughly) and is high there.
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.fft.rfftfreq(y.size, 1 / RATE)[np.argmax(spectrum)] - 200) < 5
    lags = np.arange(-40, 41)
    assert abs(lags[np.argmax([np.dot(np.roll(y, -lag), x) for lag in lags])]) <= 1
    assert np.corrcoef(x, y)[0, 1] > 0.6


def test_every_codec_of_the_issue_is_detected_here():
    # The PyAV wheel ships all of them; a build without one must say so (next test).
    assert set(codecs.available_codecs()) == set(codecs.CODECS)


def test_a_missing_codec_names_itself_and_the_present_ones(monkeypatch):
    monkeypatch.setattr(codecs, "encoder_name", lambda name: None if name == "amr-nb" else "x")
    with pytest.raises(InputError, match=r"codec 'amr-nb' is missing from this machine's FFmpeg.*present: mp3, "):
        codecs.codec_round_trip(speechlike(0.1), RATE, "amr-nb")
    with pytest.raises(InputError, match="data.augment.0.codec.codecs: .*'amr-nb' is missing"):
        validate({"data": {"augment": [{"name": "codec", "codecs": ["mp3", "amr-nb"]}]}})


def test_narrowband_codecs_remove_everything_above_4_khz():
    x = speechlike(0.75) + 0.05 * np.random.default_rng(0).standard_normal(12000).astype(np.float32)
    for codec in ("mulaw", "alaw", "amr-nb", "g726"):
        assert band_energy_db(x, 4200, 8000) > -30
        assert band_energy_db(codecs.codec_round_trip(x, RATE, codec), 4200, 8000) < -45


# ------------------------------------------------------------------------------------------------ RawBoost

@pytest.mark.parametrize("algorithms, combine", [
    (["convolutive"], "series"), (["impulsive"], "series"), (["coloured"], "series"),
    (["convolutive", "impulsive", "coloured"], "series"), (["convolutive", "impulsive"], "series"),
    (["convolutive", "coloured"], "series"), (["impulsive", "coloured"], "series"),
    (["convolutive", "impulsive"], "parallel")])
def test_rawboost_changes_the_signal_and_keeps_it_finite_and_at_its_peak(algorithms, combine):
    x = speechlike()
    y = rawboost(x, np.random.default_rng(5), RATE, algorithms, combine)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert snr_db(x, y) < 60  # really changed
    assert np.abs(y).max() == pytest.approx(np.abs(x).max(), rel=0.05)


def test_rawboost_impulsive_noise_hits_at_most_p_percent_of_the_samples():
    x = speechlike().astype(np.float64)
    fractions = []
    for seed in range(5):
        y = impulsive_noise(x, np.random.default_rng(seed), RawBoostParams(p=10))
        ratio = y / x  # untouched samples keep one common ratio: the peak rescaling
        fractions.append(np.mean(~np.isclose(ratio, np.median(ratio), rtol=1e-9)))
    assert max(fractions) <= 0.10 and min(fractions) > 0.0


def test_rawboost_coloured_noise_lies_in_its_snr_range():
    x = speechlike().astype(np.float64)
    for seed in range(5):
        y = rawboost_coloured(x, np.random.default_rng(seed), RATE, RawBoostParams(snr_min=10, snr_max=40))
        assert 10 - 0.01 <= snr_db(x, y) <= 40 + 0.01


def test_rawboost_convolutive_noise_recolours_the_spectrum():
    x = speechlike().astype(np.float64)
    y = convolutive_noise(x, np.random.default_rng(2), RATE)
    per_band = [band_energy_db(y, lo, lo + 1000) - band_energy_db(x, lo, lo + 1000) for lo in range(0, 8000, 1000)]
    assert max(per_band) - min(per_band) > 6  # some bands boosted or cut by more than 6 dB against others


# ------------------------------------------------------------------------------------------------ others

def test_telephone_band_keeps_300_to_3400_hz_only():
    x = speechlike() + 0.05 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    y = telephone_band(x, RATE)
    assert y.shape == x.shape and y.dtype == np.float32
    assert band_energy_db(x, 4100, 8000) > -30
    assert band_energy_db(y, 4100, 8000) < -50
    assert band_energy_db(y, 0, 150) < band_energy_db(x, 0, 150) - 15
    assert band_energy_db(y, 500, 3000) > -3


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_generated_rir_has_the_target_rt60_and_reverb_keeps_level_and_timing(rt60):
    rir = generated_rir(rt60, RATE, np.random.default_rng(0))
    assert measure_rt60(rir, RATE) == pytest.approx(rt60, rel=0.05)
    x = speechlike()
    y = reverberate(x, rir)
    assert y.shape == x.shape
    assert np.sqrt(np.mean(y ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=1e-4)
    click = np.zeros(RATE, np.float32)
    click[1000] = 1.0
    assert np.argmax(np.abs(reverberate(click, rir)) > 0.01) == 1000  # the direct path stays where it was


def test_reverb_from_a_rir_folder(tmp_path):
    rir = generated_rir(0.5, RATE, np.random.default_rng(1))
    (tmp_path / "rirs").mkdir()
    sf.write(tmp_path / "rirs" / "room.wav", np.concatenate([np.zeros(40), rir / 2]).astype(np.float32), RATE,
             subtype="FLOAT")
    x = speechlike()
    y = AugmentPipeline([{"name": "reverb", "p": 1.0, "folder": str(tmp_path / "rirs")}])(x, (0, 0, 0))
    assert np.allclose(y, reverberate(x, rir), atol=1e-5)  # leading silence and file scaling removed


def test_gain_scales_by_the_drawn_decibels():
    x = speechlike()
    y = AugmentPipeline([{"name": "gain", "p": 1.0, "gain_db": [-20, -20]}])(x, (0,))
    assert np.allclose(y, x * 0.1, rtol=1e-6)


# ------------------------------------------------------------------------------------------------ pipeline

CHAIN = [{"name": "rawboost", "p": 0.8}, {"name": "codec", "p": 0.5, "codecs": ["mulaw", "mp3"]},
         {"name": "noise", "p": 0.5}, {"name": "reverb", "p": 0.3}, {"name": "telephone", "p": 0.2},
         {"name": "gain", "p": 0.5}]


def test_pipeline_is_a_function_of_its_key():
    pipeline, x = AugmentPipeline(CHAIN), speechlike(0.5)
    outputs = [pipeline(x, (42, epoch, 3)) for epoch in range(6)]
    assert all(np.array_equal(pipeline(x, (42, epoch, 3)), outputs[epoch]) for epoch in range(6))
    assert len({hashlib.sha1(o.tobytes()).hexdigest() for o in outputs}) == 6
    assert all(np.isfinite(o).all() and o.shape == x.shape for o in outputs)


def test_probability_zero_leaves_audio_alone_and_one_always_applies():
    x = speechlike(0.5)
    assert np.array_equal(AugmentPipeline([{"name": "rawboost", "p": 0.0}])(x, (1,)), x)
    fired = [not np.array_equal(AugmentPipeline([{"name": "gain", "p": 1.0}])(x, (k,)), x) for k in range(20)]
    assert all(fired)
    fired = [not np.array_equal(AugmentPipeline([{"name": "gain", "p": 0.3}])(x, (k,)), x) for k in range(400)]
    assert 0.22 < np.mean(fired) < 0.38


@pytest.mark.parametrize("entry, message", [
    ({"name": "rawbost"}, "does not match any of the expected tags: 'rawboost', 'codec', 'telephone', 'noise', "
                          "'reverb', 'gain'"),
    ({"name": "noise", "snr_db": [5, 200]}, r"SNR \(dB\) range \[5, 200\] must be ordered and within"),
    ({"name": "noise", "snr_db": [20, 5]}, "must be ordered"),
    ({"name": "gain", "p": 1.5}, r"data.augment.0.gain.p: Input should be less than or equal to 1"),
    ({"name": "codec", "codecs": ["speex"]}, "unknown codec 'speex'; known: mp3, aac, opus"),
    ({"name": "gain", "gian_db": [1, 2]}, "data.augment.0.gain.gian_db: unknown key"),
])
def test_bad_augmentation_config_is_one_line_with_the_key_path(entry, message):
    with pytest.raises(InputError, match=message):
        validate({"data": {"augment": [entry]}})


def test_augmentation_and_a_feature_cache_do_not_mix():
    with pytest.raises(InputError, match="cannot be combined with data.feature_cache"):
        validate({"data": {"augment": [{"name": "gain"}], "feature_cache": "/tmp/x"}})


def test_parse_augment_names_its_source():
    with pytest.raises(InputError, match=r"augment.0.rawboost.combine"):
        parse_augment([{"name": "rawboost", "combine": "both"}])


def test_cli_exit_2_for_a_bad_augmentation(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "bad.yaml"
    config.write_text("data:\n  augment:\n    - {name: noise, p: 0.5, snr_db: [5, 500]}\n")
    done = subprocess.run([sys.executable, "-m", "plastispoof.cli", "train", str(config)], capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {config}: data.augment.0.noise.snr_db: Value error, SNR (dB) range [5, 500] must be ordered and "
        "within [-10, 100]"]


# ------------------------------------------------------------------------------------------------ dataset / resume

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), seconds=0.3)


def test_augmentation_does_not_move_the_crops(corpus):
    trials = read_dataset("asv19-la", str(corpus), "train")[:6]
    plain = TrialDataset(trials, num_samples=1600, train=True, seed=3)
    louder = TrialDataset(trials, num_samples=1600, train=True, seed=3,
                          augment=[{"name": "gain", "p": 1.0, "gain_db": [6, 6]}])
    for epoch in range(3):
        plain.set_epoch(epoch)
        louder.set_epoch(epoch)
        for i in range(len(trials)):
            assert torch.allclose(louder[i][0], plain[i][0] * 10 ** (6 / 20), rtol=1e-6)


def test_evaluation_datasets_are_never_augmented(corpus):
    trials = read_dataset("asv19-la", str(corpus), "dev")[:3]
    with_augment = TrialDataset(trials, num_samples=1600, augment=[{"name": "gain", "p": 1.0}])
    assert all(torch.equal(with_augment[i][0], TrialDataset(trials, num_samples=1600)[i][0]) for i in range(3))


def record_loader_audio(monkeypatch, seen: dict):
    """Record every training item the loader yields: (epoch, index) -> waveform digest."""
    original = TrialDataset.__getitem__

    def recording(self, index):
        item = original(self, index)
        if self.train:
            seen[(self.epoch, index)] = hashlib.sha1(item[0].numpy().tobytes()).hexdigest()
        return item

    monkeypatch.setattr(TrialDataset, "__getitem__", recording)


def test_a_resumed_run_sees_the_same_augmented_audio(tmp_path, corpus, monkeypatch):
    def config(name):
        return tiny_config(tmp_path, corpus, name=name, train={"epochs": 3},
                           data={"augment": [{"name": "rawboost", "p": 0.7},
                                             {"name": "codec", "p": 0.5, "codecs": ["mulaw", "g722"]},
                                             {"name": "noise", "p": 0.5, "snr_db": [5, 15]}]})

    whole: dict = {}
    with monkeypatch.context() as patch:
        record_loader_audio(patch, whole)
        train(config("whole"))

    killed: dict = {}
    save = runs.save_checkpoint
    written = []

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        written.append(1)
        if len(written) == 1:  # after epoch 1 of 3
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        record_loader_audio(patch, killed)
        patch.setattr(runs, "save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            train(config("killed"))
    resumed: dict = {}
    with monkeypatch.context() as patch:
        record_loader_audio(patch, resumed)
        train(config("killed"), resume=True)

    assert {epoch for epoch, _ in resumed} == {1, 2}  # the resumed run only replays the epochs left
    assert resumed == {key: digest for key, digest in whole.items() if key[0] >= 1}
    assert killed == {key: digest for key, digest in whole.items() if key[0] == 0}
    # and the audio really was augmented: epochs differ for the same utterance
    assert whole[(1, 0)] != whole[(2, 0)]


def test_an_augmentation_that_makes_nan_is_a_bug_that_raises(monkeypatch):
    import plastispoof.augment.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "make_augmenter",
                        lambda options, rate: lambda x, rng: np.where(np.arange(x.size) == 3, np.nan, x))
    pipeline = AugmentPipeline([{"name": "telephone", "p": 1.0}])
    with pytest.raises(RuntimeError, match="augmentation 'telephone' made NaN or infinite samples"):
        pipeline(speechlike(), (0, 0, 0))
