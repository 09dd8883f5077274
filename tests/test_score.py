"""Scoring files with a Detector: sliding windows over long audio, folders, corrupt files, the CLI verb."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_run import SAMPLE_RATE, bonafide_like, grnn_config, spoof_like, tiny_config

from plastispoof.data.protocols import read_dataset
from plastispoof.errors import InputError
from plastispoof.inference import Detector
from plastispoof.results import ScoreResult, format_results
from plastispoof.scoring import score_trials
from plastispoof.training import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus):
    return train(tiny_config(tmp_path_factory.mktemp("runs"), corpus))


@pytest.fixture
def detector(run_dir):
    return Detector.from_run(run_dir, device="cpu")


def test_long_audio_is_scored_as_the_mean_over_several_windows(detector, tmp_path):
    rng = np.random.default_rng(1)
    wave = np.concatenate([bonafide_like(rng, 1600), spoof_like(rng, 4000)])  # 3.5 windows of 1600
    sf.write(tmp_path / "long.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    seen = []
    hook = detector.model.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].shape[0]))
    try:
        score = detector.score_file(tmp_path / "long.wav")
    finally:
        hook.remove()
    windows = detector.windows(wave)
    assert len(windows) == sum(seen) > 2
    with torch.no_grad():
        per_window = detector.model.score(torch.from_numpy(np.stack(windows)).float())
    assert score == pytest.approx(per_window.mean().item(), abs=1e-5)
    assert abs(score - per_window[0].item()) > 1e-3  # not just the first window


def test_short_files_match_the_evaluation_scores(detector, corpus, run_dir):
    dev = read_dataset("asv19-la", corpus, "dev")[:4]
    expected = score_trials(detector.model, dev, detector.num_samples, 1, "cpu")
    for trial in dev:
        assert detector.score_file(trial.path) == pytest.approx(expected[trial.utt_id], abs=1e-5)


def test_decisions_use_the_dev_threshold(detector, run_dir):
    threshold = detector.threshold  # the run's dev threshold of whole-file (window-mean) scores, like the Detector's
    assert threshold == json.loads((run_dir / "meta.json").read_text())["dev_thresholds"]["window-mean"]
    assert detector.decide(threshold + 1e-3) == "bonafide"
    assert detector.decide(threshold) == "spoof"  # the threshold itself is not above the threshold


def test_a_folder_with_a_corrupt_file_scores_the_others(detector, tmp_path):
    rng = np.random.default_rng(2)
    sf.write(tmp_path / "a.flac", bonafide_like(rng, 3000), SAMPLE_RATE)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "b.wav", spoof_like(rng, 2000), SAMPLE_RATE)
    (tmp_path / "sub" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (tmp_path / "notes.txt").write_text("not audio")
    results = detector.score_paths([tmp_path, tmp_path / "missing.flac"])
    by_name = {r.path.rsplit("/", 1)[-1]: r for r in results}
    assert sorted(by_name) == ["a.flac", "b.wav", "broken.wav", "missing.flac"]
    for name in ("a.flac", "b.wav"):
        assert isinstance(by_name[name].score, float) and by_name[name].decision in ("bonafide", "spoof")
        assert by_name[name].error is None
    assert "broken.wav" in by_name["broken.wav"].error and by_name["broken.wav"].score is None
    assert "no such file" in by_name["missing.flac"].error
    assert {"path", "score", "decision", "error", "llr", "p_bonafide", "duration_s", "model_hash"} <= set(
        results[0].as_dict())
    text = format_results(results)
    assert len(text.splitlines()) == 4 and "error" in text


def test_foreign_weights_score_without_a_threshold(tmp_path):
    from plastispoof.models.base import build_model

    torch.save(build_model("aasist-l").state_dict(), tmp_path / "aasist-l.pth")
    detector = Detector.from_weights("aasist-l", tmp_path / "aasist-l.pth", device="cpu")
    sf.write(tmp_path / "clip.wav", bonafide_like(np.random.default_rng(3), 8000), SAMPLE_RATE)
    [result] = detector.score_paths([tmp_path / "clip.wav"])
    assert isinstance(result.score, float) and result.decision is None and result.error is None


def test_a_detector_needs_a_run_or_a_model_with_weights():
    with pytest.raises(InputError, match="--run"):
        Detector.from_weights(None, None)
    with pytest.raises(InputError, match="--weights"):
        Detector.from_weights("aasist", None)


def test_format_results_shows_scores_and_errors():
    text = format_results([ScoreResult("x.wav", 1.5, "bonafide"), ScoreResult("y.wav", None, None, "bad file")])
    assert "1.5000" in text and "bonafide" in text and "y.wav: bad file" in text


@pytest.mark.slow
def test_cli_score_reports_the_corrupt_file_and_exits_2(tmp_path, corpus):
    run = train(grnn_config(tmp_path / "runs", corpus))
    folder = tmp_path / "audio"
    folder.mkdir()
    rng = np.random.default_rng(4)
    sf.write(folder / "good1.flac", bonafide_like(rng, 4000), SAMPLE_RATE)
    sf.write(folder / "good2.flac", spoof_like(rng, 9000), SAMPLE_RATE)
    (folder / "corrupt.flac").write_bytes(b"fLaC broken")
    done = subprocess.run([sys.executable, "-m", "plastispoof.cli", "score", str(folder), "--run", str(run), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "1 of 3 files could not be scored" in done.stderr and "Traceback" not in done.stderr
    results = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, done.stdout.splitlines())}  # JSON Lines
    assert results["corrupt.flac"]["error"] and results["corrupt.flac"]["score"] is None
    assert all(isinstance(results[n]["score"], float) for n in ("good1.flac", "good2.flac"))


def test_windows_of_many_files_share_batches_in_order_with_the_same_scores(detector, tmp_path):
    rng = np.random.default_rng(5)
    lengths = [800, 1600, 3000, 900, 1200, 5000, 700]  # 1, 1, 3, 1, 1, 6, 1 windows of 1600 samples
    paths = []
    for index, length in enumerate(lengths):
        paths.append(tmp_path / f"{index}.wav")
        sf.write(paths[-1], (bonafide_like if index % 2 else spoof_like)(rng, length), SAMPLE_RATE, subtype="FLOAT")
    paths.insert(3, tmp_path / "gone.wav")  # a missing file in the middle keeps its place
    detector.batch_size = 4
    sizes = []
    hook = detector.model.register_forward_hook(lambda _m, inputs, _o: sizes.append(inputs[0].shape[0]))
    try:
        results = detector.score_paths(paths)
    finally:
        hook.remove()
    assert [r.path for r in results] == [str(p) for p in paths]
    assert results[3].score is None and "gone.wav" in results[3].error
    windows = sum(len(detector.windows(np.zeros(n))) for n in lengths)
    assert sizes == [4] * (windows // 4) + ([windows % 4] if windows % 4 else [])  # full batches across files
    for result, path in zip(results[:3] + results[4:], paths[:3] + paths[4:]):
        assert result.score == pytest.approx(detector.score_file(path), rel=1e-5, abs=1e-6)


def test_a_detector_refuses_an_unknown_precision_and_lists_the_known():
    from plastispoof.models.base import build_model

    with pytest.raises(InputError, match="unknown precision 'half'; known: float32, bfloat16"):
        Detector(build_model("aasist-l"), 16000, precision="half")


def test_cli_score_in_bfloat16_and_its_bad_input(tmp_path, monkeypatch, capsys):
    from plastispoof import inference
    from plastispoof.cli import main
    from plastispoof.models.base import build_model

    torch.manual_seed(0)
    torch.save(build_model("aasist-l").state_dict(), tmp_path / "aasist-l.pth")
    sf.write(tmp_path / "clip.wav", bonafide_like(np.random.default_rng(6), 20000), SAMPLE_RATE)
    reference = Detector.from_weights("aasist-l", tmp_path / "aasist-l.pth", device="cpu")
    expected = reference.score_file(tmp_path / "clip.wav")

    def cli(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["plastispoof", "score", str(tmp_path / "clip.wav"), *args])
        try:
            main()
            code = 0
        except SystemExit as exited:
            code = exited.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    weights = ("--model", "aasist-l", "--weights", str(tmp_path / "aasist-l.pth"))
    code, out, err = cli(*weights, "--precision", "bfloat16", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["precision"] == "bfloat16"
    assert result["score"] != expected and result["score"] == pytest.approx(expected, abs=0.05)  # bfloat16, close
    code, out, err = cli(*weights)
    assert code == 0 and "computed in bfloat16" not in out.splitlines()[0]
    monkeypatch.setattr(inference, "native_bfloat16", lambda device: False)
    code, out, err = cli(*weights, "--precision", "bfloat16")
    assert code == 0 and "computed in bfloat16" in out.splitlines()[0]  # the table says so in its header
    assert "no bfloat16 kernels for this CPU" in err and err.count("\n") == 1
    for args, message in [((*weights, "--precision", "half"), "unknown precision 'half'; known: float32, bfloat16"),
                          (("--onnx", str(tmp_path / "x.onnx"), "--precision", "bfloat16"),
                           "--precision is for PyTorch")]:
        code, out, err = cli(*args)
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_long_file_is_read_block_by_block_and_scores_as_the_whole_file(detector, tmp_path, monkeypatch):
    import plastispoof.audio as audio
    import plastispoof.results as results

    rng = np.random.default_rng(11)
    # 24 kHz stereo, 7.3 s: resampled, down-mixed and cut into windows across several blocks
    stereo = np.stack([bonafide_like(rng, 175_200), spoof_like(rng, 175_200)], axis=1)
    sf.write(tmp_path / "long.wav", stereo, 24000, subtype="FLOAT")
    whole = next(detector.iter_results([tmp_path / "long.wav"], segments=True))
    monkeypatch.setattr(results, "STREAM_SECONDS", 1.0)  # anything over 1 s is streamed ...
    monkeypatch.setattr(audio, "_STREAM_BLOCK_SECONDS", 0.7)  # ... in blocks shorter than a second
    read = []
    monkeypatch.setattr(audio.StreamedAudio, "blocks", lambda self, inner=audio.StreamedAudio.blocks: (
        read.append(block.size) or block for block in inner(self)))
    streamed = next(detector.iter_results([tmp_path / "long.wav"], segments=True))
    assert len(read) > 10 and max(read) < 0.8 * SAMPLE_RATE  # never the whole file at once
    assert streamed.error is None and streamed.duration_s == whole.duration_s
    assert [s["start_s"] for s in streamed.segments] == [s["start_s"] for s in whole.segments]
    np.testing.assert_allclose([s["score"] for s in streamed.segments], [s["score"] for s in whole.segments],
                               atol=1e-6)
    assert streamed.score == pytest.approx(whole.score, abs=1e-6)


def test_a_long_file_that_turns_out_bad_fails_alone(detector, tmp_path, monkeypatch):
    import plastispoof.results as results

    rng = np.random.default_rng(12)
    bad = bonafide_like(rng, 3 * SAMPLE_RATE)
    bad[2 * SAMPLE_RATE] = np.nan  # discovered only once the third second is read
    sf.write(tmp_path / "a_bad.wav", bad, SAMPLE_RATE, subtype="FLOAT")
    sf.write(tmp_path / "b_good.wav", bonafide_like(rng, 3 * SAMPLE_RATE), SAMPLE_RATE, subtype="FLOAT")
    monkeypatch.setattr(results, "STREAM_SECONDS", 1.0)
    first, second = detector.iter_results([tmp_path / "a_bad.wav", tmp_path / "b_good.wav"])
    assert "NaN or infinite" in first.error and first.score is None
    assert second.error is None and second.score == pytest.approx(detector.score_file(tmp_path / "b_good.wav"),
                                                                   abs=1e-6)
