"""The embedded corpus: ASVspoof 2019 LA layout, seen/unseen attacks, determinism, caching, signal sanity."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from plastispoof.data import synthetic
from plastispoof.data.synthetic import (
    ATTACKS,
    PROFILES,
    SAMPLE_RATE,
    STAMP_NAME,
    SUBSETS,
    Profile,
    audio_dir,
    protocol_path,
    write_corpus,
)
from plastispoof.errors import InputError

LINE = re.compile(r"^(LA_\d{4}) (LA_([TDE])_\d{7}) - (-|A\d\d) (bonafide|spoof)$")
UNSEEN = {a for a, attack in ATTACKS.items() if not attack.seen}
# Small enough to write in about a second; eval still holds every attack once.
MICRO = Profile({"train": (2, 6), "dev": (1, 6), "eval": (2, len(ATTACKS))},
                {"train": 2, "dev": 1, "eval": 2}, (0.5, 0.6))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("tiny"), profile="tiny", seed=7)


@pytest.fixture
def micro(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(PROFILES, "micro", MICRO)
    return "micro"


def read(root: Path, subset: str) -> list[tuple[str, str, str, str]]:
    """(speaker, utt, attack, key) of every protocol line, after checking each line's shape."""
    rows = []
    for line in protocol_path(root, subset).read_text().splitlines():
        match = LINE.match(line)
        assert match, f"bad protocol line {line!r}"
        speaker, utt, letter, attack, key = match.groups()
        assert letter == subset[0].upper()
        assert (attack == "-") == (key == "bonafide")
        rows.append((speaker, utt, attack, key))
    return rows


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != STAMP_NAME}


def band_energy_fraction(audio: np.ndarray, above_hz: float) -> float:
    power = np.abs(np.fft.rfft(audio)) ** 2
    return float(power[np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE) > above_hz].sum() / power.sum())


def log_spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference (dB) of two spectrograms, each floored 80 dB below the louder one's peak."""
    def db(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::128] * np.hanning(512)
        return 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) + 1e-12)
    da, db_ = db(a), db(b)
    floor = max(da.max(), db_.max()) - 80
    return float(np.mean(np.abs(np.maximum(da, floor) - np.maximum(db_, floor))))


def autocorrelation_pitch(audio: np.ndarray) -> float:
    """Median F0 over the loudest 40 ms frames, from the autocorrelation peak in 60-500 Hz."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, 640)[::160]
    frames = frames[np.argsort((frames ** 2).sum(1))[-len(frames) // 3:]]
    frames = frames - frames.mean(1, keepdims=True)
    spectrum = np.fft.rfft(frames * np.hanning(640), 1280, axis=1)
    corr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : SAMPLE_RATE // 60 + 1]
    low = SAMPLE_RATE // 500
    return float(np.median(SAMPLE_RATE / (low + np.argmax(corr[:, low:], axis=1))))


def test_protocols_have_the_asvspoof_2019_la_shape_and_class_balance(tiny: Path) -> None:
    for subset in SUBSETS:
        rows = read(tiny, subset)
        n_bonafide, n_spoof = PROFILES["tiny"].utterances[subset]
        assert sum(key == "bonafide" for *_, key in rows) == n_bonafide
        assert sum(key == "spoof" for *_, key in rows) == n_spoof
        assert len({utt for _, utt, _, _ in rows}) == len(rows)


def test_every_listed_file_is_16k_mono_pcm16_of_the_profile_length(tiny: Path) -> None:
    low, high = (round(s * SAMPLE_RATE) for s in PROFILES["tiny"].seconds)
    for subset in SUBSETS:
        for _, utt, _, _ in read(tiny, subset):
            info = sf.info(audio_dir(tiny, subset) / f"{utt}.flac")
            assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
            assert low - synthetic.FRAME < info.frames <= high


def test_unseen_attacks_only_in_eval_and_speakers_disjoint(tiny: Path) -> None:
    rows = {subset: read(tiny, subset) for subset in SUBSETS}
    attacks = {subset: {a for _, _, a, _ in rows[subset]} - {"-"} for subset in SUBSETS}
    seen = set(ATTACKS) - UNSEEN
    assert attacks["train"] == attacks["dev"] == seen
    assert attacks["eval"] == set(ATTACKS)
    assert len(UNSEEN) >= 2
    speakers = {subset: {s for s, *_ in rows[subset]} for subset in SUBSETS}
    assert not speakers["train"] & speakers["eval"]
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["dev"] & speakers["eval"]


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path: Path, micro: str) -> None:
    first = digest(write_corpus(tmp_path / "a", profile=micro, seed=1))
    assert first == digest(write_corpus(tmp_path / "b", profile=micro, seed=1))
    other = digest(write_corpus(tmp_path / "c", profile=micro, seed=2))
    flac = [name for name in first if name.endswith(".flac")]
    assert len(flac) == sum(b + s for b, s in MICRO.utterances.values())
    assert all(first[name] != other[name] for name in flac)


def test_a_finished_corpus_is_returned_without_rewriting(tmp_path: Path, micro: str) -> None:
    root = write_corpus(tmp_path, profile=micro, seed=3)
    stamp = json.loads((root / STAMP_NAME).read_text())
    assert (stamp["profile"], stamp["seed"]) == (micro, 3)
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert write_corpus(tmp_path, profile=micro, seed=3) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes


def test_a_corpus_without_stamp_is_rebuilt(tmp_path: Path, micro: str) -> None:
    root = write_corpus(tmp_path, profile=micro, seed=4)
    expected = digest(root)
    # Simulate a crash: stamp missing, one file gone, one half written, a leftover from another profile.
    (root / STAMP_NAME).unlink()
    files = sorted(audio_dir(root, "train").glob("*.flac"))
    files[0].unlink()
    files[1].write_bytes(b"partial")
    (audio_dir(root, "train") / "LA_T_9999999.flac").write_bytes(b"stale")
    write_corpus(tmp_path, profile=micro, seed=4)
    assert digest(root) == expected
    assert (root / STAMP_NAME).exists()


def test_another_seed_in_the_same_folder_replaces_the_corpus_only_when_forced(tmp_path: Path, micro: str) -> None:
    before = digest(write_corpus(tmp_path, profile=micro, seed=5))
    with pytest.raises(InputError, match=f"holds the {micro} corpus of seed 5; .* choose another --out, or --force"):
        write_corpus(tmp_path, profile=micro, seed=6)
    assert digest(tmp_path) == before  # refused before anything was touched
    after = digest(write_corpus(tmp_path, profile=micro, seed=6, force=True))
    assert before.keys() == after.keys() and before != after
    assert json.loads((tmp_path / STAMP_NAME).read_text())["seed"] == 6


def test_unknown_profile_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown corpus profile 'huge'.*demo, full, tiny"):
        write_corpus(tmp_path, profile="huge")
    assert not any(tmp_path.iterdir())


def test_bona_fide_has_a_voice_pitch_and_no_level_cue(tiny: Path) -> None:
    rms = {"bonafide": [], "spoof": []}
    for subset in SUBSETS:
        for _, utt, _, key in read(tiny, subset):
            audio, _ = sf.read(audio_dir(tiny, subset) / f"{utt}.flac")
            rms[key].append(20 * np.log10(np.sqrt(np.mean(audio ** 2))))
            if key == "bonafide":
                assert 70 <= autocorrelation_pitch(audio) <= 400, utt
    # The level is random and the same for both classes: it must not give the class away.
    assert abs(np.mean(rms["bonafide"]) - np.mean(rms["spoof"])) < 2.0


def test_band_limited_attack_has_less_high_band_energy_than_bona_fide(tiny: Path) -> None:
    fractions = {"-": [], "A04": []}
    for subset in SUBSETS:
        for _, utt, attack, _ in read(tiny, subset):
            if attack in fractions:
                audio, _ = sf.read(audio_dir(tiny, subset) / f"{utt}.flac")
                fractions[attack].append(band_energy_fraction(audio, 4000))
    assert len(fractions["A04"]) >= 3
    assert np.mean(fractions["A04"]) < 0.5 * np.mean(fractions["-"])


@pytest.mark.parametrize("attack_id", sorted(ATTACKS))
def test_each_attack_changes_the_speech_but_keeps_length_and_level(attack_id: str) -> None:
    rng = np.random.default_rng(0)
    speaker = synthetic.make_speaker("LA_0001", female=False, rng=rng)
    speech = synthetic.speak(speaker, SAMPLE_RATE // 2, rng)
    spoof = ATTACKS[attack_id].apply(speech, 0.5, rng)
    assert spoof.shape == speech.audio.shape and np.all(np.isfinite(spoof))
    level = np.sqrt(np.mean(spoof ** 2) / np.mean(speech.audio ** 2))
    assert 0.5 < level < 2.0
    assert log_spectral_distance(spoof, speech.audio) > 0.3  # an identity attack scores 0


def test_strength_controls_the_artefact() -> None:
    rng = np.random.default_rng(1)
    speech = synthetic.speak(synthetic.make_speaker("LA_0001", female=True, rng=rng), SAMPLE_RATE, rng)
    bona_fide = band_energy_fraction(speech.audio, 5000)
    weak, strong = (band_energy_fraction(ATTACKS["A04"].apply(speech, s, np.random.default_rng(2)), 5000)
                    for s in (0.0, 1.0))
    assert strong < 0.01 * bona_fide < weak


@pytest.mark.slow
def test_parallel_writing_gives_the_same_bytes(tmp_path: Path, micro: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    serial = digest(write_corpus(tmp_path / "serial", profile=micro, seed=8))
    monkeypatch.setattr(synthetic, "_PARALLEL_FROM", 1)
    assert digest(write_corpus(tmp_path / "parallel", profile=micro, seed=8)) == serial
