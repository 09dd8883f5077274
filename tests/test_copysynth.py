"""The copy-synthesis corpus: each vocoder family on real-like audio, the shared channel, the corpus writer,
its splits, leave-one-family-out protocols and manifest, the TTS engines, the open-speech recipe and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from needs import skip_or_fail

from plastispoof.augment.codecs import encoder_name
from plastispoof.data.copysynth.vocoders import COPY_ATTACKS, analyse
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
    assert COPY_ATTACKS[attack_id].available()  # the pinned PyAV wheel has MP3, Opus and AMR-NB encoders
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
    assert encoder_name("mp3") == "libmp3lame" and encoder_name("opus") == "libopus"
    assert encoder_name("amr-nb") == "libopencore_amrnb"


# ------------------------------------------------------------------------------------------------ corpus

from pathlib import Path  # noqa: E402

import soundfile as sf  # noqa: E402

from plastispoof.data.copysynth.channel import Channel  # noqa: E402
from plastispoof.data.copysynth.corpus import (  # noqa: E402
    Source,
    assign_subsets,
    find_sources,
    lofo_root,
    read_manifest,
    write_copysynth_corpus,
)
from plastispoof.data.protocols import read_dataset  # noqa: E402
from plastispoof.errors import InputError  # noqa: E402

SPEAKERS = ("anna", "bert")
TEXTS_PER_SPEAKER = 3


def write_bonafide(folder: Path, rate: int = 8000) -> Path:
    """Two speakers with three 1 s telephone-band (8 kHz) clips each and a transcripts CSV."""
    rows = ["path,text"]
    for s, speaker in enumerate(SPEAKERS):
        for i in range(TEXTS_PER_SPEAKER):
            path = folder / speaker / f"u{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, voice(1.0, 110 + 40 * s + 10 * i, 160 + 40 * s, seed=10 * s + i, rate=rate), rate,
                     subtype="PCM_16")
            rows.append(f"{speaker}/u{i}.wav,Sentence number {i} read by {speaker}.")
    (folder / "transcripts.csv").write_text("\n".join(rows) + "\n")
    return folder


FAST_FAMILIES = ["lpc", "codec"]  # the cheapest two: the corpus tests are about layout, not vocoders


@pytest.fixture(scope="module")
def bonafide(tmp_path_factory) -> Path:
    return write_bonafide(tmp_path_factory.mktemp("bonafide"))


@pytest.fixture(scope="module")
def corpus(bonafide, tmp_path_factory) -> Path:
    sources = find_sources(bonafide, "en", bonafide / "transcripts.csv")
    return write_copysynth_corpus(tmp_path_factory.mktemp("corpus"), sources, attacks=FAST_FAMILIES, seed=3)


def test_protocols_read_back_and_match_the_manifest(corpus):
    manifest = read_manifest(corpus)
    assert set(manifest["families"]) == set(FAST_FAMILIES)
    assert manifest["families"]["codec"]["attacks"] == ["K01", "K02", "K03"]
    for subset in ("train", "dev", "eval"):
        trials = read_dataset("asv19-la", corpus, subset)  # checks that every file exists
        counts = manifest["counts"][subset]
        assert sum(t.label == "bonafide" for t in trials) == counts["bonafide"] == TEXTS_PER_SPEAKER * 2 // 3
        assert sum(t.label == "spoof" for t in trials) == counts["spoof"] == 2 * counts["bonafide"]
        for family, info in manifest["families"].items():
            assert sum(t.attack in info["attacks"] for t in trials) == counts["per_family"][family]
        family_of = {"-": "bonafide", **{a: f for f, info in manifest["families"].items() for a in info["attacks"]}}
        seconds = {name: sum(sf.info(str(t.path)).duration for t in trials if family_of[t.attack] == name)
                   for name in manifest["durations_s"][subset]}
        assert seconds == pytest.approx(manifest["durations_s"][subset], abs=0.02)
        assert {t.speaker for t in trials} == set(SPEAKERS)  # text split: every speaker in every subset
        assert all(sf.info(str(t.path)).samplerate == SAMPLE_RATE for t in trials)


@pytest.mark.parametrize("family", FAST_FAMILIES)
def test_leave_one_family_out_protocols(corpus, family):
    manifest = read_manifest(corpus)
    root = lofo_root(corpus, family)
    assert root == corpus / "lofo" / family
    held_out = set(manifest["families"][family]["attacks"])
    for subset in ("train", "dev"):
        attacks = {t.attack for t in read_dataset("asv19-la", root, subset)}
        assert not attacks & held_out and "-" in attacks and len(attacks) > 1
    evaluation = read_dataset("asv19-la", root, "eval")
    main = read_dataset("asv19-la", corpus, "eval")
    assert [(t.utt_id, t.attack, t.speaker) for t in evaluation] == [(t.utt_id, t.attack, t.speaker) for t in main]
    assert [t.path.resolve() for t in evaluation] == [t.path.resolve() for t in main]  # linked, not copied
    assert held_out & {t.attack for t in evaluation}
    assert all(t.path.resolve().parent == (corpus / "LA" / "ASVspoof2019_LA_eval" / "flac").resolve()
               for t in evaluation)


def test_lofo_root_and_manifest_errors(corpus, tmp_path):
    with pytest.raises(InputError, match="no family 'world'"):
        lofo_root(corpus, "world")
    with pytest.raises(InputError, match="corpus.json is missing"):
        read_manifest(tmp_path)


def test_bonafide_and_spoof_pass_through_the_same_channel(corpus):
    channel = Channel(**read_manifest(corpus)["settings"]["channel"])
    assert channel.high_hz == 3800.0  # 8 kHz sources: the band-pass stops below their Nyquist frequency
    for trial in read_dataset("asv19-la", corpus, "train"):
        audio, rate = sf.read(str(trial.path))
        level = 20 * np.log10(np.sqrt(np.mean(audio ** 2)))
        assert level == pytest.approx(channel.level_dbfs, abs=0.1), trial
        spectrum = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(len(audio), 1 / rate)
        above = 10 * np.log10(spectrum[freqs > channel.high_hz + 400].sum() / spectrum.sum())
        below = 10 * np.log10(spectrum[freqs < channel.low_hz - 30].sum() / spectrum.sum())
        assert above < -35 and below < -35, (trial, above, below)


def test_text_split_is_disjoint_and_keeps_every_speaker_everywhere():
    sources = [Source(Path(f"/x/{speaker}/{i}.wav"), speaker, "en", f"text {i % 7}")
               for speaker in ("a", "b", "c") for i in range(20)]
    subsets = assign_subsets(sources, "text", seed=5)
    texts = {subset: {s.text for s, t in zip(sources, subsets) if t == subset} for subset in ("train", "dev", "eval")}
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["eval"] and not texts["dev"] & texts["eval"]
    for speaker in ("a", "b", "c"):
        assert {t for s, t in zip(sources, subsets) if s.speaker == speaker} == {"train", "dev", "eval"}


def test_speaker_split_is_disjoint_in_speakers_and_needs_three():
    sources = [Source(Path(f"/x/{k}/{i}.wav"), f"spk{k}", "en", None) for k in range(6) for i in range(3)]
    subsets = assign_subsets(sources, "speaker", seed=5)
    owners = {s.speaker: {t for s2, t in zip(sources, subsets) if s2.speaker == s.speaker} for s in sources}
    assert all(len(found) == 1 for found in owners.values())
    assert {next(iter(found)) for found in owners.values()} == {"train", "dev", "eval"}
    with pytest.raises(InputError, match="needs 3 speakers"):
        assign_subsets(sources[:6], "speaker", seed=5)


def test_same_seed_same_bytes_and_a_finished_corpus_is_kept(bonafide, corpus, tmp_path):
    sources = find_sources(bonafide, "en", bonafide / "transcripts.csv")
    again = write_copysynth_corpus(tmp_path / "again", sources, attacks=FAST_FAMILIES, seed=3)
    for path in sorted((corpus / "LA").rglob("*.*")):
        twin = again / path.relative_to(corpus)
        assert twin.read_bytes() == path.read_bytes(), path
    stamp = (again / "corpus.json").stat().st_mtime_ns
    write_copysynth_corpus(tmp_path / "again", sources, attacks=FAST_FAMILIES, seed=3)
    assert (again / "corpus.json").stat().st_mtime_ns == stamp


def test_a_rebuild_with_other_families_drops_the_old_lofo_folders(bonafide, tmp_path):
    sources = find_sources(bonafide)
    write_copysynth_corpus(tmp_path, sources, attacks=["lpc", "K01"], seed=3)
    assert (tmp_path / "lofo" / "codec").is_dir()
    write_copysynth_corpus(tmp_path, sources, attacks=["lpc", "S01"], seed=3)
    assert sorted(p.name for p in (tmp_path / "lofo").iterdir()) == ["lpc", "sinusoidal"]
    protocols = tmp_path / "LA" / "ASVspoof2019_LA_cm_protocols"
    assert "K01" not in (protocols / "ASVspoof2019.LA.cm.eval.trl.txt").read_text()


def test_a_silent_recording_is_named(bonafide, tmp_path):
    silent = tmp_path / "in" / "spk" / "silent.wav"
    silent.parent.mkdir(parents=True)
    sf.write(silent, np.zeros(8000), 8000, subtype="PCM_16")
    with pytest.raises(InputError, match="silent.wav is digital silence"):
        write_copysynth_corpus(tmp_path / "out", find_sources(tmp_path / "in"), attacks=["lpc", "K01"])


def test_one_family_cannot_be_left_out(bonafide, tmp_path):
    sources = find_sources(bonafide)
    with pytest.raises(InputError, match="at least two families"):
        write_copysynth_corpus(tmp_path, sources, attacks=["world"])


# --------------------------------------------------------------------------------------------------- TTS

import shutil  # noqa: E402

from plastispoof.data.copysynth import tts as tts_module  # noqa: E402
from plastispoof.data.copysynth.tts import SENTENCES, TTS_ENGINES  # noqa: E402


def test_espeak_speaks_every_builtin_language_with_a_high_band_the_channel_removes():
    espeak = TTS_ENGINES["espeak-ng"]
    channel = Channel.for_sources(8000)
    for language in SENTENCES:
        audio, rate = espeak.speak(SENTENCES[language][0], language, np.random.default_rng(0))
        assert rate == 22050 and 0.8 < len(audio) / rate < 6.0, language
        spectrum = np.abs(np.fft.rfft(audio)) ** 2
        assert spectrum[np.fft.rfftfreq(len(audio), 1 / rate) > 4200].sum() > 1e-3 * spectrum.sum()
        out = channel(audio, rate)
        spectrum = np.abs(np.fft.rfft(out)) ** 2
        assert spectrum[np.fft.rfftfreq(len(out), 1 / SAMPLE_RATE) > 4200].sum() < 1e-4 * spectrum.sum()


def test_tts_takes_differ_by_seed_and_repeat_for_the_same_seed():
    espeak = TTS_ENGINES["espeak-ng"]
    a, _ = espeak.speak("Press one to hear the menu again.", "en", np.random.default_rng(1))
    b, _ = espeak.speak("Press one to hear the menu again.", "en", np.random.default_rng(1))
    c, _ = espeak.speak("Press one to hear the menu again.", "en", np.random.default_rng(2))
    assert np.array_equal(a, b) and not (len(a) == len(c) and np.allclose(a, c))


@pytest.mark.parametrize("name", ["festival", "flite"])
def test_festival_and_flite_speak_english_and_refuse_french(name):
    engine = TTS_ENGINES[name]
    if engine.missing():
        skip_or_fail(f"{name} not installed ({engine.missing()})")
    audio, rate = engine.speak("Your new password has been saved.", "en", np.random.default_rng(0))
    assert rate in (16000, 32000) and 1.0 < len(audio) / rate < 5.0 and np.std(audio) > 0.01  # slt HTS: 32 kHz
    with pytest.raises(InputError, match=f"{name} cannot speak fr"):
        engine.check({"en", "fr"})


def test_a_missing_engine_names_its_debian_package(monkeypatch):
    monkeypatch.setattr(tts_module.shutil, "which", lambda program: None)
    with pytest.raises(InputError, match="espeak-ng is not installed; install it with: apt-get install espeak-ng"):
        TTS_ENGINES["espeak-ng"].check({"en"})
    with pytest.raises(InputError, match="apt-get install festival festvox-kallpc16k"):
        TTS_ENGINES["festival"].check({"en"})


def test_tts_family_in_the_corpus_speaks_builtin_sentences_disjoint_by_subset(bonafide, tmp_path):
    assert shutil.which("espeak-ng"), "CI installs espeak-ng (.ci/run)"
    root = write_copysynth_corpus(tmp_path, find_sources(bonafide, "fr"), attacks=["lpc"], tts=["espeak-ng"], seed=4)
    manifest = read_manifest(root)
    assert manifest["families"]["espeak-ng"] == {"attacks": ["T01"], "kind": "tts",
                                                  "description": TTS_ENGINES["espeak-ng"].description}
    for subset in ("train", "dev", "eval"):
        trials = read_dataset("asv19-la", root, subset)
        spoken = [t for t in trials if t.attack == "T01"]
        assert len(spoken) == sum(t.label == "bonafide" for t in trials) == manifest["counts"][subset]["bonafide"]
        assert all(0.8 < sf.info(str(t.path)).duration < 6.0 for t in spoken)
    # Without transcripts, sentence i of a language belongs to subset i mod 3: subsets never share one.
    from plastispoof.data.copysynth.corpus import _builtin_text

    counters: dict = {}
    said = {subset: {_builtin_text("fr", subset, counters) for _ in range(5)} for subset in ("train", "dev", "eval")}
    assert all(len(said[s]) == 2 for s in said) and len(set.union(*said.values())) == 6


# ------------------------------------------------------------------------------------------------ recipe

from plastispoof.data.copysynth.recipes import open_speech_sources  # noqa: E402


@pytest.fixture(scope="module")
def french_prompts() -> list:
    assert Path(ASTERISK_FR).is_dir(), "CI installs asterisk-core-sounds-fr-wav (.ci/run)"
    return open_speech_sources(languages=("fr",))


def test_open_speech_reads_the_asterisk_prompts_and_their_transcripts(french_prompts):
    assert len(french_prompts) > 200
    assert {s.speaker for s in french_prompts} == {"fr_CA_f_June"} and {s.language for s in french_prompts} == {"fr"}
    by_name = {s.path.name: s for s in french_prompts}
    assert by_name["conf-invalid.wav"].text.startswith("Ce numéro de conférence n'est pas valide")
    for source in french_prompts[:20]:
        info = sf.info(str(source.path))
        assert info.samplerate == 8000 and 1.0 <= info.duration <= 8.0 and len(source.text.split()) >= 2


def test_open_speech_without_the_packages_prints_the_apt_line(tmp_path):
    with pytest.raises(InputError) as caught:
        open_speech_sources(sounds=tmp_path, docs=tmp_path, languages=("fr", "ru"))
    assert str(caught.value).endswith("apt-get install asterisk-core-sounds-fr-wav asterisk-core-sounds-fr "
                                      "asterisk-core-sounds-ru-wav asterisk-core-sounds-ru")


def test_world_and_lpc_follow_the_f0_of_a_real_prompt(french_prompts):
    source = next(s for s in french_prompts if s.path.name == "conf-invalid.wav")
    raw, rate = sf.read(str(source.path))
    speech = analyse(Channel.resample(raw, rate)[: 2 * SAMPLE_RATE])
    for attack_id in ("W01", "W02", "L01"):
        y = resynthesise(attack_id, speech)
        assert y.shape == speech.audio.shape
        assert median_cents_error(speech.f0_frames, f0_track(y)) < 30.0, attack_id


def test_a_corpus_from_real_prompts_speaks_their_transcripts(french_prompts, tmp_path):
    chosen = [s for s in french_prompts if s.path.name in ("conf-invalid.wav", "conf-kicked.wav", "activated.wav",
                                                           "conf-leaderhasleft.wav")]
    root = write_copysynth_corpus(tmp_path, chosen, attacks=["codec"], tts=["espeak-ng"], seed=1)
    manifest = read_manifest(root)
    assert manifest["settings"]["channel"]["high_hz"] == 3800.0
    trials = [t for subset in ("train", "dev", "eval") for t in read_dataset("asv19-la", root, subset)]
    assert len(trials) == 3 * len(chosen) and {t.speaker for t in trials} == {"fr_CA_f_June"}
    bonafide = {t.utt_id: sf.info(str(t.path)).duration for t in trials if t.attack == "-"}
    spoken = {t.utt_id: sf.info(str(t.path)).duration for t in trials if t.attack == "T01"}
    # eSpeak reads the speaker's own sentences: its durations follow theirs in proportion (a fixed built-in sentence
    # would give near-equal durations, so the ratios would spread as widely as the prompts' lengths, here 1.7x).
    ratios = np.array(sorted(spoken.values())) / np.array(sorted(bonafide.values()))
    assert 0.5 < ratios.mean() < 1.5 and ratios.max() / ratios.min() < 1.25
    assert max(bonafide.values()) / min(bonafide.values()) > 1.5  # the prompts differ enough for that to tell


# --------------------------------------------------------------------------------------------------- CLI

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402


def plastispoof(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plastispoof.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env)


def test_cli_writes_a_corpus_from_a_folder(bonafide, tmp_path):
    result = plastispoof("synth", "--bonafide", bonafide, "--transcripts", bonafide / "transcripts.csv",
                         "--attacks", "lpc,K01", "--seed", 3, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(tmp_path)
    assert manifest["families"]["codec"]["attacks"] == ["K01"] and set(manifest["lofo"]) == {"lpc", "codec"}
    train_trials = read_dataset("asv19-la", lofo_root(tmp_path, "codec"), "train")
    assert len(train_trials) == 2 * manifest["counts"]["train"]["bonafide"]


@pytest.mark.parametrize("case", ["no audio", "missing engine", "one family", "both sources", "unknown family"])
def test_cli_bad_input_is_one_line_and_exit_2(case, bonafide, tmp_path):
    env = None
    args: list = ["synth", "--out", tmp_path / "out", "--bonafide", bonafide]
    if case == "no audio":
        junk = tmp_path / "junk"
        junk.mkdir()
        (junk / "a.wav").write_bytes(b"RIFF not really a wave file")
        (junk / "notes.txt").write_text("hello")
        args[-1], expected = junk, "no decodable audio under --bonafide"
    elif case == "missing engine":
        args += ["--tts", "espeak-ng"]
        env = {**os.environ, "PATH": str(tmp_path)}  # an empty PATH: no espeak-ng
        expected = "TTS engine espeak-ng is not installed; install it with: apt-get install espeak-ng"
    elif case == "one family":
        args += ["--attacks", "world"]
        expected = "leave-one-family-out needs at least two families, got 1 (world)"
    elif case == "both sources":
        args += ["--recipe", "open-speech"]
        expected = "give exactly one of --bonafide DIR and --recipe NAME"
    else:
        args += ["--attacks", "world,vocaloid"]
        expected = "unknown copy-synthesis family or attack 'vocaloid'"
    result = plastispoof(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert expected in result.stderr and "Traceback" not in result.stderr
