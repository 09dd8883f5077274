"""Audio loading (mono, resampling, every bad-file case), crop / pad, sliding windows, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from plastispoof.audio import fix_length, load_audio, sliding_windows, write_audio
from plastispoof.errors import InputError

PCM16_STEP = 1 / 32768


def peak_frequency(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sample_rate)[np.argmax(spectrum)])


def test_loads_16k_mono_unchanged(audio_file, sine):
    x = sine(seconds=0.5)
    loaded = load_audio(audio_file("a.flac", x))
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    np.testing.assert_allclose(loaded, x, atol=PCM16_STEP)


def test_stereo_is_averaged_to_mono(audio_file, sine):
    left, right = sine(440.0), sine(1000.0, amplitude=0.3)
    loaded = load_audio(audio_file("stereo.wav", np.stack([left, right], axis=1)))
    assert loaded.shape == left.shape
    np.testing.assert_allclose(loaded, (left + right) / 2, atol=PCM16_STEP)


@pytest.mark.parametrize("source_rate", [44100, 8000, 22050, 48000])
def test_resampled_to_16k_keeps_pitch(audio_file, sine, source_rate):
    seconds = 1.0
    loaded = load_audio(audio_file(f"tone_{source_rate}.wav", sine(seconds=seconds, sample_rate=source_rate),
                                   sample_rate=source_rate))
    assert abs(len(loaded) - 16000 * seconds) <= 1
    assert peak_frequency(loaded, 16000) == pytest.approx(440.0, abs=1.0)


def test_loads_to_another_target_rate(audio_file, sine):
    loaded = load_audio(audio_file(x=sine(seconds=1.0)), sample_rate=8000)
    assert abs(len(loaded) - 8000) <= 1
    assert peak_frequency(loaded, 8000) == pytest.approx(440.0, abs=1.0)


@pytest.mark.parametrize("suffix", [".ogg", ".mp3"])
def test_compressed_formats_through_libsndfile(audio_file, sine, suffix):
    if suffix.lstrip(".").upper() not in sf.available_formats():
        pytest.skip(f"this libsndfile has no {suffix}")
    loaded = load_audio(audio_file(f"tone{suffix}", sine(seconds=1.0)))
    assert abs(len(loaded) - 16000) < 2000  # codecs add priming / padding samples
    assert peak_frequency(loaded, 16000) == pytest.approx(440.0, abs=2.0)


def _message(path, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        load_audio(path, **kwargs)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    return message


def test_missing_file(tmp_path):
    assert "not found" in _message(tmp_path / "nope.flac")


def test_directory_is_not_audio(tmp_path):
    assert "not found" in _message(tmp_path)


@pytest.mark.parametrize("name", ["corrupt.wav", "corrupt.flac", "noext"])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    assert "cannot decode" in _message(path)


def test_truncated_flac(audio_file, sine):
    path = audio_file("cut.flac", sine(seconds=1.0))
    path.write_bytes(path.read_bytes()[:60])  # header only, cut inside the metadata
    _message(path)


def test_unrecognised_container_without_backend(tmp_path):
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))
    assert "cannot decode" in _message(path)


def test_empty_file(audio_file):
    assert "no samples" in _message(audio_file("empty.wav", np.zeros(0, np.float32)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(audio_file, sine, bad):
    x = sine()
    x[100] = bad
    assert "NaN or infinite" in _message(audio_file("bad.wav", x, subtype="FLOAT"))


def test_digital_silence(audio_file):
    path = audio_file("silent.flac", np.zeros(4000, np.float32))
    assert "silence" in _message(path)
    np.testing.assert_array_equal(load_audio(path, allow_silent=True), np.zeros(4000, np.float32))


def test_quiet_but_not_silent_is_accepted(audio_file, sine):
    assert np.abs(load_audio(audio_file("quiet.wav", sine(amplitude=1e-3), subtype="FLOAT"))).max() > 5e-4


def test_too_long(audio_file, sine):
    path = audio_file(x=sine(seconds=0.5))
    assert "limit" in _message(path, max_seconds=0.25)
    assert len(load_audio(path, max_seconds=0.6)) == 8000


# ---- fix_length ----------------------------------------------------------------------------------------------

def test_crop_keeps_the_first_samples():
    x = np.arange(100.0)
    np.testing.assert_array_equal(fix_length(x, 30), x[:30])


def test_random_crop_is_a_seeded_contiguous_slice():
    x = np.arange(1000.0)
    first = fix_length(x, 64, random_crop=True, rng=np.random.default_rng(3))
    again = fix_length(x, 64, random_crop=True, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, x[int(first[0]):int(first[0]) + 64])
    starts = {fix_length(x, 64, random_crop=True, rng=seed)[0] for seed in range(20)}
    assert len(starts) > 10


def test_repeat_pad_tiles_the_signal():
    x = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    padded = fix_length(x, 8)
    assert padded.dtype == np.float32
    np.testing.assert_array_equal(padded, [1, -2, 3, 1, -2, 3, 1, -2])


def test_zero_pad_and_random_crop_of_short_signal():
    x = np.array([1.0, 2.0])
    np.testing.assert_array_equal(fix_length(x, 5, pad="zero"), [1, 2, 0, 0, 0])
    np.testing.assert_array_equal(fix_length(x, 5, random_crop=True, rng=0), [1, 2, 1, 2, 1])


def test_exact_length_is_a_copy():
    x = np.arange(64600, dtype=np.float32)
    fixed = fix_length(x)
    np.testing.assert_array_equal(fixed, x)
    fixed[0] = -1
    assert x[0] == 0


def test_fix_length_rejects_bad_arguments():
    with pytest.raises(ValueError):
        fix_length(np.zeros(0), 10)
    with pytest.raises(ValueError):
        fix_length(np.ones(3), 10, pad="reflect")


# ---- sliding_windows -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("length, window, hop", [(10_000, 1000, None), (10_001, 1000, 300), (5000, 1000, 1000)])
def test_windows_cover_the_signal(length, window, hop):
    x = np.random.default_rng(0).standard_normal(length)
    windows = sliding_windows(x, window, hop)
    step = hop or window // 2
    starts = [int(np.flatnonzero(x == w[0])[0]) for w in windows]
    assert windows.shape == (len(starts), window)
    assert starts[0] == 0 and starts[-1] == length - window
    assert all(0 < b - a <= step for a, b in zip(starts, starts[1:]))
    for start, w in zip(starts, windows):
        np.testing.assert_array_equal(w, x[start:start + window])


def test_short_signal_gives_one_padded_window():
    windows = sliding_windows(np.array([1.0, 2.0, 3.0]), window=7)
    np.testing.assert_array_equal(windows, [[1, 2, 3, 1, 2, 3, 1]])


# ---- write_audio ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["out.flac", "sub/dir/out.wav"])
def test_write_audio_round_trip_leaves_no_temporary(tmp_path, sine, name):
    x = sine()
    path = write_audio(tmp_path / name, x, 16000)
    np.testing.assert_allclose(load_audio(path), x, atol=PCM16_STEP)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    write_audio(path, x / 2, 16000)  # replaces the old file
    np.testing.assert_allclose(load_audio(path), x / 2, atol=PCM16_STEP)


def test_failed_write_keeps_the_old_file(tmp_path, sine):
    path = write_audio(tmp_path / "out.flac", sine(), 16000)
    with pytest.raises((ValueError, RuntimeError, sf.LibsndfileError)):  # libsndfile refuses a negative rate
        write_audio(path, sine(), -5)
    assert [p.name for p in tmp_path.iterdir()] == ["out.flac"]
    np.testing.assert_allclose(load_audio(path), sine(), atol=PCM16_STEP)
