"""WS /v1/stream against the real uvicorn server: windows arrive while audio is still being sent, the final message
equals score --segments on the same audio to float32 rounding (PCM at the model's rate, PCM resampled, a container),
and every bad stream (garbage, nothing, a disconnect mid-stream, silence, too long, a wrong key) gets its error while
the server keeps serving."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from serve_live import LiveServer, clip, encoded
from tiny_run import SAMPLE_RATE
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from plastispoof.detectors import load_detector

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(calibrated_run):
    live = LiveServer(calibrated_run, max_duration_s=2.0, stream_idle_s=0.5)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def detector(calibrated_run):
    detector = load_detector(run=calibrated_run, device="cpu")  # as score loads it: with the run's calibration
    return detector


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2")).tobytes()


def score_segments(detector, path: Path) -> dict:
    """``score --segments --json`` of one file."""
    return next(iter(detector.iter_results([path], segments=True))).as_dict()


def stream(url: str, start: dict, chunks: list[bytes], end: bool = True) -> list[dict]:
    """Send ``start`` and ``chunks`` (then end), collecting every message until the server closes."""
    messages = []
    with connect(url) as ws:
        ws.send(json.dumps(start))
        messages.append(json.loads(ws.recv(timeout=10)))
        for chunk in chunks:
            ws.send(chunk)
        if end:
            ws.send(json.dumps({"end": True}))
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=20)))
        except ConnectionClosed:
            pass
    return messages


def assert_equals_score_segments(final: dict, expected: dict) -> None:
    assert final["type"] == "result" and final["elapsed_ms"] > 0
    for key in ("decision", "operating_point", "threshold", "prior", "model", "model_hash", "note", "error"):
        assert final[key] == expected[key], key
    for key in ("score", "duration_s"):
        assert final[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key  # float32 rounding
    # llr = slope * score + offset: the tiny model's calibration slope (~170 here) scales the score's float32
    # rounding, so an llr near 0 can differ by ~1e-6 nats; 1e-4 nats (and p_bonafide 2.5e-5) is still that rounding.
    assert final["llr"] == pytest.approx(expected["llr"], rel=1e-5, abs=1e-4)
    assert final["p_bonafide"] == pytest.approx(expected["p_bonafide"], rel=1e-5, abs=2.5e-5)
    assert len(final["segments"]) == len(expected["segments"])
    for got, want in zip(final["segments"], expected["segments"]):
        assert got["start_s"] == pytest.approx(want["start_s"], abs=1e-9)
        assert got["end_s"] == pytest.approx(want["end_s"], abs=1e-9)
        assert got["score"] == pytest.approx(want["score"], rel=1e-5, abs=1e-6)  # float32 rounding
        assert got["llr"] == pytest.approx(want["llr"], rel=1e-5, abs=1e-4)


def assert_still_serves(server) -> None:
    messages = stream(server.ws_url, {"format": "pcm16", "sample_rate": SAMPLE_RATE}, [pcm16(clip(0.25, seed=3))])
    assert messages[-1]["type"] == "result" and messages[-1]["decision"] in ("bonafide", "spoof")
    answer = httpx.post(f"{server.url}/v1/score", files={"file": ("a.wav", encoded(clip(0.3, seed=4)))})
    assert answer.status_code == 200


def test_a_streamed_file_ends_with_what_score_segments_says(server, detector, tmp_path):
    audio = np.concatenate([clip(0.6, "bonafide", seed=1), clip(0.53, "spoof", seed=2)])  # last window off the grid
    path = tmp_path / "clip.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    data = pcm16(sf.read(path, dtype="float32")[0])
    sizes = [3000, 1, 4999, 777, 12000]  # odd chunk sizes, in bytes (whole samples)
    chunks, at = [], 0
    while at < len(data):
        size = sizes[len(chunks) % len(sizes)] // 2 * 2 or 2
        chunks.append(data[at: at + size])
        at += size
    messages = stream(server.ws_url, {"format": "pcm16", "sample_rate": SAMPLE_RATE, "name": "clip.wav"}, chunks)
    ready, windows, final = messages[0], messages[1:-1], messages[-1]
    assert ready["type"] == "ready" and ready["window_s"] == 0.1 and ready["hop_s"] == 0.05
    assert all(m["type"] == "window" for m in windows)
    expected = score_segments(detector, path)
    assert_equals_score_segments(final, expected)
    assert final["path"] == "clip.wav"
    assert [m["index"] for m in windows] == list(range(len(expected["segments"])))
    for message, segment in zip(windows, expected["segments"]):
        assert message["start_s"] == pytest.approx(segment["start_s"]) and message["end_s"] == pytest.approx(
            segment["end_s"])
        assert message["score"] == pytest.approx(segment["score"], rel=1e-5, abs=1e-6)
        assert message["decision"] == ("bonafide" if segment["score"] > final["threshold"] else "spoof")
    running = windows[-1]["running"]
    assert running["score"] == pytest.approx(final["score"], rel=1e-5) and running["decision"] == final["decision"]
    assert running["windows"] == len(windows)


def test_windows_arrive_while_the_audio_is_still_coming(server):
    audio = pcm16(clip(1.0, seed=5))
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"format": "pcm16", "sample_rate": SAMPLE_RATE}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(audio[: 2 * 2400])  # 0.15 s: windows at 0 and 0.05 s are complete
        first = [json.loads(ws.recv(timeout=5)) for _ in range(2)]
        assert [m["start_s"] for m in first] == [0.0, 0.05] and first[0]["running"]["windows"] == 1
        ws.send(audio[2 * 2400: 2 * 4000])  # up to 0.25 s: windows at 0.1 and 0.15 s
        second = [json.loads(ws.recv(timeout=5)) for _ in range(2)]
        assert [m["start_s"] for m in second] == pytest.approx([0.1, 0.15])
        ws.send(json.dumps({"end": True}))
        rest = []
        try:
            while True:
                rest.append(json.loads(ws.recv(timeout=10)))
        except ConnectionClosed:
            pass
    assert rest[-1]["type"] == "result" and len(rest[-1]["segments"]) == 4 + len(rest) - 1


def test_short_resampled_and_container_streams_match_score_segments(server, detector, tmp_path):
    short = clip(0.07, "spoof", seed=6)  # shorter than one window: one repeat-padded window, at the end
    sf.write(tmp_path / "short.wav", short, SAMPLE_RATE, subtype="PCM_16")
    messages = stream(server.ws_url, {"format": "pcm16", "sample_rate": SAMPLE_RATE},
                      [pcm16(sf.read(tmp_path / "short.wav", dtype="float32")[0])])
    assert_equals_score_segments(messages[-1], score_segments(detector, tmp_path / "short.wav"))
    assert "shorter than one window" in messages[-1]["note"]

    audio = clip(0.8, "bonafide", seed=7)  # a container: FLAC bytes in pieces, decoded when complete
    flac = encoded(audio, format="FLAC", subtype="PCM_16")
    (tmp_path / "c.flac").write_bytes(flac)
    messages = stream(server.ws_url, {"format": "container"}, [flac[i: i + 1000] for i in range(0, len(flac), 1000)])
    assert [m["type"] for m in messages[1:-1]] == ["window"] * len(messages[-1]["segments"])
    assert_equals_score_segments(messages[-1], score_segments(detector, tmp_path / "c.flac"))

    rate = 8000  # PCM at another rate, resampled as it arrives
    low = clip(1.0, "bonafide", seed=8)[::2]
    sf.write(tmp_path / "low.wav", low, rate, subtype="PCM_16")
    data = pcm16(sf.read(tmp_path / "low.wav", dtype="float32")[0])
    messages = stream(server.ws_url, {"format": "pcm16", "sample_rate": rate},
                      [data[i: i + 1600] for i in range(0, len(data), 1600)])
    # soxr's streaming resampler gives the samples of load_audio's one-shot resampling
    assert_equals_score_segments(messages[-1], score_segments(detector, tmp_path / "low.wav"))


# ------------------------------------------------------------------------------------------ bad streams


def closing_error(url: str, first: object | None, then: list | None = None) -> tuple[dict, int]:
    """The error message and close code a stream gets for ``first`` (None: send nothing) and ``then``."""
    with connect(url) as ws:
        try:
            for item in ([] if first is None else [first]) + (then or []):
                ws.send(item if isinstance(item, (bytes, str)) else json.dumps(item))
        except ConnectionClosed:
            pass  # the server refused before reading it all (its error is still there to read)
        messages = []
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=10)))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
    error = messages[-1]
    assert error["type"] == "error", messages
    return error, code


@pytest.mark.parametrize("first, then, status, words, code", [
    ("not json at all", None, 422, "starts with a JSON text message", 1003),
    (b"\x00\x01binary first", None, 422, "starts with a JSON text message", 1003),
    ({"format": "mp5"}, None, 422, "unknown stream format", 1003),
    ({"format": "pcm16", "sample_rate": "fast"}, None, 422, "sample rate", 1003),
    ({"format": "pcm16", "sample_rate": 16000, "operating_point": "fpr=7"}, None, 422, "fpr", 1003),
    ({"format": "pcm16", "sample_rate": 16000}, [b"\x00\x01\x02"], 422, "odd number of bytes", 1003),
    ({"format": "pcm16", "sample_rate": 16000}, ["garbage text"], 422, "binary audio chunks", 1003),
    ({"format": "pcm16", "sample_rate": 16000}, [{"end": True}], 422, "before any audio", 1003),
    ({"format": "pcm16", "sample_rate": 16000}, [bytes(6400), {"end": True}], 422, "digital silence", 1003),
    ({"format": "pcm16", "sample_rate": 16000}, [pcm16(clip(2.5, seed=9))], 413, "2 s limit", 1009),
    ({"format": "container"}, [b"not audio", {"end": True}], 422, "cannot decode", 1003),
    (None, None, 408, "sent nothing for 0.5 s", 1008),
])
def test_a_bad_stream_gets_its_error_and_the_server_keeps_serving(server, first, then, status, words, code):
    error, closed_with = closing_error(server.ws_url, first, then)
    assert error["status"] == status and words in error["error"], error
    assert closed_with == code
    assert_still_serves(server)


def test_more_streams_than_allowed_get_503(calibrated_run):
    live = LiveServer(calibrated_run, max_streams=1)
    try:
        with connect(live.ws_url) as first:
            first.send(json.dumps({"format": "pcm16", "sample_rate": SAMPLE_RATE}))
            assert json.loads(first.recv(timeout=10))["type"] == "ready"
            error, code = closing_error(live.ws_url, {"format": "pcm16", "sample_rate": SAMPLE_RATE})
            assert error["status"] == 503 and "1 streams are open" in error["error"] and error["retry_after"] == 5
            assert code == 1013
        assert_still_serves(live)
    finally:
        live.stop()


def test_a_stream_that_disconnects_mid_stream(server):
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"format": "pcm16", "sample_rate": SAMPLE_RATE}))
        ws.recv(timeout=10)
        ws.send(pcm16(clip(0.3, seed=10)))
        ws.recv(timeout=10)  # a window: the stream is live
    deadline = time.monotonic() + 5
    while "plastispoof_streams_open 0.0" not in httpx.get(f"{server.url}/metrics").text:
        assert time.monotonic() < deadline, "the stream was not closed on the server"
        time.sleep(0.05)
    assert_still_serves(server)


def test_a_stream_needs_the_api_key_when_one_is_set(calibrated_run):
    live = LiveServer(calibrated_run, api_key=b"k3y")
    try:
        error, code = closing_error(live.ws_url, {"format": "pcm16", "sample_rate": SAMPLE_RATE, "api_key": "nope"})
        assert error["status"] == 401 and code == 1008
        messages = stream(live.ws_url, {"format": "pcm16", "sample_rate": SAMPLE_RATE, "api_key": "k3y"},
                          [pcm16(clip(0.2, seed=11))])
        assert messages[-1]["type"] == "result"
        with connect(live.ws_url, additional_headers={"Authorization": "Bearer k3y"}) as ws:
            ws.send(json.dumps({"format": "pcm16", "sample_rate": SAMPLE_RATE}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
    finally:
        live.stop()
