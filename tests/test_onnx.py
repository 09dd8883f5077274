"""ONNX export (features inside, dynamic batch) and scoring through onnxruntime without PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_run import SAMPLE_RATE, bonafide_like, grnn_config, spoof_like, write_tiny_corpus

from plastispoof.calibrate import calibrate
from plastispoof.calibration import read_calibration
from plastispoof.detectors import load_detector
from plastispoof.errors import InputError
from plastispoof.inference import Detector
from plastispoof.onnx_export import export_onnx
from plastispoof.onnx_runtime import OnnxDetector, read_export_metadata
from plastispoof.training import train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), seconds=0.5)


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory, corpus):
    run = train(grnn_config(tmp_path_factory.mktemp("runs"), corpus))
    calibrate(run, "asv19-la", corpus, "dev", device="cpu")
    return run


@pytest.fixture(scope="module")
def export(calibrated_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "grnn.onnx"
    return out, export_onnx(calibrated_run, out)


def test_export_scores_like_pytorch_with_card_and_calibration_beside_and_inside(export, calibrated_run, corpus,
                                                                                tmp_path):
    out, metadata = export
    assert metadata["check_max_abs_difference"] <= 1e-4
    card = json.loads(out.with_name("grnn.card.json").read_text())
    calibration = json.loads(out.with_name("grnn.calibration.json").read_text())
    run_card = json.loads((calibrated_run / "card.json").read_text())
    assert card["model"] == "grnn" and card["export"]["precision"] == "float32"
    assert {k: v for k, v in card.items() if k != "export"} == run_card
    assert calibration["slope"] == json.loads((calibrated_run / "calibration.json").read_text())["slope"]
    assert read_export_metadata(out)["card"] == card

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "long.wav", np.concatenate([bonafide_like(rng, 9000), spoof_like(rng, 7000)]), SAMPLE_RATE,
             subtype="FLOAT")
    sf.write(tmp_path / "short.wav", bonafide_like(rng, 2000), SAMPLE_RATE, subtype="FLOAT")
    reference = Detector.from_run(calibrated_run, device="cpu")
    reference.use_calibration(read_calibration(calibrated_run / "calibration.json"))
    onnx = load_detector(onnx=out)
    assert isinstance(onnx, OnnxDetector) and onnx.calibration is not None
    paths = [tmp_path / "long.wav", tmp_path / "short.wav"]
    for mine, theirs in zip(onnx.iter_results(paths, segments=True, operating_point="bayes"),
                            reference.iter_results(paths, segments=True, operating_point="bayes")):
        assert mine.score == pytest.approx(theirs.score, abs=1e-4)
        assert mine.llr == pytest.approx(theirs.llr, abs=1e-4) and mine.decision == theirs.decision
        assert mine.model_hash == theirs.model_hash and len(mine.segments) == len(theirs.segments)
    # the batch axis is dynamic: 1 and 7 rows
    for rows in (1, 7):
        waves = rng.standard_normal((rows, onnx.num_samples)).astype(np.float32) * 0.1
        with torch.no_grad():
            expected = reference.model.score(torch.from_numpy(waves)).numpy()
        np.testing.assert_allclose(onnx.score_batch(waves), expected, atol=1e-4)


def test_files_that_are_not_plastispoof_exports_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "plain.onnx"))
    with pytest.raises(InputError, match="not a plastispoof export"):
        OnnxDetector.from_onnx(tmp_path / "plain.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(InputError, match="not an ONNX model"):
        OnnxDetector.from_onnx(tmp_path / "junk.onnx")
    done = subprocess.run([sys.executable, "-m", "plastispoof.cli", "info", str(tmp_path / "plain.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not a plastispoof export" in done.stderr


def test_score_onnx_runs_without_pytorch(export, tmp_path):
    out, _ = export
    sf.write(tmp_path / "a.wav", bonafide_like(np.random.default_rng(1), 6000), SAMPLE_RATE, subtype="FLOAT")
    program = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
               "from plastispoof.cli import main\n"
               f"sys.argv = ['plastispoof', 'score', '--onnx', {str(out)!r}, {str(tmp_path / 'a.wav')!r}, '--json']\n"
               "main()\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [result] = [json.loads(line) for line in done.stdout.splitlines()]
    expected = OnnxDetector.from_onnx(out).score_file(tmp_path / "a.wav")
    assert result["score"] == pytest.approx(expected, abs=1e-6) and result["llr"] is not None
    info = subprocess.run([sys.executable, "-m", "plastispoof.cli", "info", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert info.returncode == 0 and "ONNX opset" in info.stdout


@pytest.fixture(scope="module")
def embedded_eval(tmp_path_factory):
    from plastispoof.data.protocols import read_dataset
    from plastispoof.data.synthetic import write_corpus

    root = write_corpus(tmp_path_factory.mktemp("synthetic"), profile="tiny", seed=42)
    return [t.path for t in read_dataset("asv19-la", root, "eval")][::4]  # 8 of the 32 eval files


@pytest.mark.slow
@pytest.mark.parametrize("name, args", [("resnet18", {}), ("grnn", {}), ("aasist", {}), ("wav2vec2-small", {})])
def test_built_in_models_export_within_1e_4_on_the_embedded_eval_set(name, args, embedded_eval, tmp_path):
    from plastispoof.models.aasist import OFFICIAL_MODELS
    from plastispoof.models.base import build_model

    torch.manual_seed(0)
    model = build_model(name, **args).eval()
    torch.save(model.state_dict(), tmp_path / "w.pth")
    if name in OFFICIAL_MODELS:
        metadata = export_onnx(None, tmp_path / "m.onnx", model=name, weights=tmp_path / "w.pth")
        reference = Detector.from_weights(name, tmp_path / "w.pth", device="cpu")
    else:
        reference = Detector(model, 64600, device="cpu")
        from plastispoof.onnx_export import export_detector

        metadata = export_detector(reference, tmp_path / "m.onnx")
    onnx = OnnxDetector.from_onnx(tmp_path / "m.onnx")
    assert metadata["num_samples"] == 64600
    differences = [abs(onnx.score_file(path) - reference.score_file(path)) for path in embedded_eval]
    assert max(differences) <= 1e-4, differences


def test_quantized_export_is_marked_and_stays_close(calibrated_run, tmp_path):
    import onnx

    metadata = export_onnx(calibrated_run, tmp_path / "q.onnx", quantize=True)
    assert metadata["quantized"] and metadata["card"]["export"]["precision"] == "int8 dynamic"
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    assert any(node.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeLSTM")
               for node in graph.node)  # really quantised
    from plastispoof.onnx_export import fixed_feature_nodes

    export_onnx(calibrated_run, tmp_path / "f.onnx")
    fixed = fixed_feature_nodes(onnx.load(str(tmp_path / "f.onnx")),
                                Detector.from_run(calibrated_run, device="cpu").model)
    kept = {node.name: node.op_type for node in graph.node}
    assert fixed and all(kept.get(name) in ("MatMul", "Conv", "Gemm") for name in fixed)  # features stay float
    rng = np.random.default_rng(3)
    waves = np.stack([bonafide_like(rng, metadata["num_samples"]) if i % 2 else spoof_like(rng, metadata["num_samples"])
                      for i in range(16)]).astype(np.float32)
    quantized = OnnxDetector.from_onnx(tmp_path / "q.onnx").score_batch(waves)
    with torch.no_grad():
        expected = Detector.from_run(calibrated_run, device="cpu").model.score(torch.from_numpy(waves)).numpy()
    # int8 moves a typical score by a small part of the scores' own spread, none by more than the spread itself
    # (this tiny model's few weights quantise coarsely: the largest move here is about 0.6 of it)
    spread, moved = np.std(expected), np.abs(quantized - expected)
    assert spread > 0 and np.all(np.isfinite(quantized))
    assert np.median(moved) < 0.1 * spread and np.max(moved) < spread
    assert np.corrcoef(quantized, expected)[0, 1] > 0.9
