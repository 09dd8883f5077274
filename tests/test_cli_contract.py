"""The command line's contract, through its real entry point (``plastispoof.cli.main``) in this process: bad input
gets one line on stderr and exit 2, nothing is chosen silently for the user, and what a person is told is there."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import soundfile as sf
from cli_run import one_line_error, run_cli
from tiny_run import SAMPLE_RATE, bonafide_like, spoof_like, tiny_config

from plastispoof import __version__
from plastispoof.training import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus):
    return train(tiny_config(tmp_path_factory.mktemp("runs"), corpus))


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, bonafide_like(np.random.default_rng(0), 8000), SAMPLE_RATE)
    return path


def test_version_and_debug_after_the_verb(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out == f"plastispoof {__version__}\n"
    one_line_error(*run_cli(capsys, "score", tmp_path, "--run", tmp_path / "nope"), "is not a run directory")
    with pytest.raises(Exception, match="is not a run directory"):  # --debug anywhere: the traceback, not a line
        run_cli(capsys, "score", tmp_path, "--run", tmp_path / "nope", "--debug")


@pytest.mark.parametrize("verb", ["score", "calibrate", "export", "stress"])
def test_two_model_sources_are_refused_by_every_verb(capsys, verb, run_dir, clip, tmp_path):
    weights = ["--model", "aasist", "--weights", tmp_path / "w.pth"]
    args = {"score": ["score", clip, "--run", run_dir, *weights],
            "calibrate": ["calibrate", run_dir, *weights, "--dataset", "asv19-la", "--root", tmp_path],
            "export": ["export", run_dir, *weights, "--out", tmp_path / "m.onnx"],
            "stress": ["stress", run_dir, *weights, "--dataset", "asv19-la", "--root", tmp_path]}[verb]
    one_line_error(*run_cli(capsys, *args), f"give one model: --run {run_dir}" if verb == "score" else
                   "give one model:", "--model aasist --weights", "name two")


def test_onnx_with_a_run_is_refused(capsys, run_dir, clip, tmp_path):
    one_line_error(*run_cli(capsys, "score", clip, "--run", run_dir, "--onnx", tmp_path / "m.onnx"),
                   f"--run {run_dir} and --onnx")


def test_export_refuses_a_folder_that_does_not_exist(capsys, run_dir, tmp_path):
    one_line_error(*run_cli(capsys, "export", run_dir, "--out", tmp_path / "no" / "such" / "m.onnx"),
                   "does not exist; create it first")
    assert not (tmp_path / "no").exists()


def test_score_names_the_model_first_and_failures_go_to_stderr_too(capsys, run_dir, clip, tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    code, out, err = run_cli(capsys, "score", clip, tmp_path / "junk.wav", "--run", run_dir)
    assert code == 2 and out.startswith("# tiny-test: decision at eer") and "audio_s" in out.splitlines()[1]
    assert f"error: {tmp_path / 'junk.wav'}: cannot decode" in err and "1 of 2 files could not be scored" in err


def test_plots_of_two_files_with_one_name_do_not_overwrite_each_other(capsys, run_dir, clip, tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "call.wav").write_bytes(clip.read_bytes())
    code, _, err = run_cli(capsys, "score", tmp_path / "x", tmp_path / "y", "--run", run_dir, "--plot",
                           tmp_path / "plots")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["call.wav.png", "y_call.wav.png"]


def test_stereo_and_resampled_input_is_noted_once_per_run(capsys, run_dir, tmp_path):
    rng = np.random.default_rng(1)
    for index in range(3):
        stereo = np.stack([bonafide_like(rng, 12000), spoof_like(rng, 12000)], axis=1)
        sf.write(tmp_path / f"s{index}.wav", stereo, 24000)
    code, out, err = run_cli(capsys, "score", tmp_path, "--run", run_dir, "--json")
    assert code == 0 and len(out.splitlines()) == 3
    assert err.count("channels: they were averaged to mono") == 1
    assert err.count("resampled to the model's 16000 Hz") == 1


def test_m4a_and_a_folder_of_opus_files_are_decoded(capsys, run_dir, tmp_path):
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(48000) / 48000)).astype(np.float32)
    (tmp_path / "opus").mkdir()
    for path, codec in ((tmp_path / "a.m4a", "aac"), (tmp_path / "opus" / "b.opus", "libopus")):
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=48000, layout="mono")
            size = stream.codec_context.frame_size or 960
            for start in range(0, tone.size, size):
                chunk = np.pad(tone[start:start + size], (0, max(0, size - tone[start:start + size].size)))
                frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, start
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    code, out, err = run_cli(capsys, "score", tmp_path / "a.m4a", tmp_path / "opus", "--run", run_dir, "--json")
    results = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert [r["error"] for r in results] == [None, None]
    assert all(r["duration_s"] == pytest.approx(1.0, abs=0.05) for r in results)


def test_a_file_over_the_duration_limit_is_refused_and_the_limit_is_an_option(capsys, run_dir, tmp_path):
    sf.write(tmp_path / "long.wav", bonafide_like(np.random.default_rng(2), 3 * SAMPLE_RATE), SAMPLE_RATE)
    code, out, err = run_cli(capsys, "score", tmp_path / "long.wav", "--run", run_dir, "--max-seconds", "2")
    assert code == 2 and "over the 2 s limit" in err
    code, out, err = run_cli(capsys, "score", tmp_path / "long.wav", "--run", run_dir, "--max-seconds", "0")
    assert code == 0 and "long.wav" in out


def test_a_model_near_chance_is_flagged(capsys, tmp_path, corpus, clip):
    # lr 0: the network stays at its initialisation, a coin flip on dev
    coin = train(tiny_config(tmp_path, corpus, name="coin", train={"lr": 0.0, "epochs": 1}))
    meta = json.loads((coin / "meta.json").read_text())
    code, out, err = run_cli(capsys, "score", clip, "--run", coin)
    assert code == 0
    assert ("close to chance" in err) == (meta["dev_eer"] >= 0.40)


def test_set_takes_several_overrides_and_a_typo_gets_a_suggestion(capsys, tmp_path, corpus):
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config(tmp_path, corpus).model_dump_json())
    one_line_error(*run_cli(capsys, "train", config, "--set", "train.epochs=1", "train.lrr=0.1"),
                   "train.lrr: unknown key; did you mean 'lr'?")


def test_bad_seeds_are_one_line_in_every_reproduce_verb(capsys, tmp_path):
    for verb in ("table1", "layers", "tradeoff", "unseen"):
        args = ["reproduce", verb, "--seeds", "4x", "--root", tmp_path]
        if verb != "unseen":
            args += ["--dataset", "synthetic"]
        one_line_error(*run_cli(capsys, *args), "--seeds takes whole numbers")


def test_synth_refuses_to_replace_a_corpus_of_another_profile(capsys, tiny_corpus):
    stamp = (tiny_corpus / "plastispoof_synth.json").read_text()
    one_line_error(*run_cli(capsys, "synth", "--out", tiny_corpus, "--profile", "demo"),
                   "holds the tiny corpus of seed 42", "--force")
    assert (tiny_corpus / "plastispoof_synth.json").read_text() == stamp  # untouched


def test_undecodable_recordings_are_counted_and_named(tmp_path):
    from plastispoof.data.copysynth.corpus import find_sources

    speaker = tmp_path / "spk"
    speaker.mkdir()
    for index in range(2):
        sf.write(speaker / f"good{index}.wav", bonafide_like(np.random.default_rng(index), 8000), SAMPLE_RATE)
    (speaker / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    notes = []
    sources = find_sources(tmp_path, note=notes.append)
    assert [s.path.name for s in sources] == ["good0.wav", "good1.wav"]
    assert len(notes) == 1 and "skipped 1 of 3 files" in notes[0] and "broken.wav" in notes[0]
