"""plastispoof serve: the HTTP API against the real uvicorn server -- answers equal to score --json, the model
card, probes, metrics, limits (413, 503 + Retry-After, 504), every bad input of issue 25 (each followed by a normal
request that must succeed), the API key, CORS, and the CLI verb's draining shutdown on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from cli_run import one_line_error, run_cli
from serve_live import LiveServer, clip, encoded
from tiny_run import SAMPLE_RATE, grnn_config

from plastispoof.detectors import load_detector

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(calibrated_run):
    live = LiveServer(calibrated_run)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def tight(calibrated_run):
    """A server with small limits: 50 kB uploads, 1 s of audio, one worker, a queue of one, 1 s time limit."""
    live = LiveServer(calibrated_run, max_upload_mb=0.05, max_duration_s=1.0, threads=1, max_queue=1, timeout_s=1.0,
                      stream_idle_s=0.5)
    yield live
    live.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def reference(calibrated_run: Path, tmp_path: Path, audio: np.ndarray, segments: bool = False, **options) -> dict:
    """What ``score --json`` says for ``audio`` written to a file."""
    path = tmp_path / "reference.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    detector = load_detector(run=calibrated_run, device="cpu")  # as score loads it: with the run's calibration
    return next(iter(detector.iter_results([path], segments=segments, **options))).as_dict()


def assert_same_result(got: dict, expected: dict) -> None:
    assert set(got) - {"elapsed_ms"} == set(expected)
    for key, value in expected.items():
        if key == "path":
            continue
        if key == "segments" and value is not None:
            assert len(got[key]) == len(value)
            for a, b in zip(got[key], value):
                assert a == pytest.approx(b, rel=1e-6, abs=1e-4)  # llr: the slope scales float32 rounding
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        else:
            assert got[key] == value, key


def assert_still_serves(url: str, headers: dict | None = None) -> None:
    wave = encoded(clip(0.3, "bonafide", seed=11), subtype="PCM_16")
    answer = httpx.post(f"{url}/v1/score", files={"file": ("ok.wav", wave, "audio/wav")}, headers=headers,
                        timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["decision"] in ("bonafide", "spoof") and answer.json()["error"] is None


def assert_error(answer: httpx.Response, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["status"] == status and words in body["error"], body


# ------------------------------------------------------------------------------------------ answers


def test_a_multipart_upload_gets_the_score_json_object(client, calibrated_run, tmp_path):
    audio = clip(0.45, "spoof", seed=1)
    answer = client.post("/v1/score", params={"segments": "true"},
                         files={"file": ("clip.wav", encoded(audio, subtype="PCM_16"), "audio/wav")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["path"] == "clip.wav" and body["elapsed_ms"] > 0
    expected = reference(calibrated_run, tmp_path, audio, segments=True)
    assert_same_result(body, expected)
    assert body["llr"] is not None and 0 < body["p_bonafide"] < 1 and len(body["segments"]) == 8


def test_a_raw_body_and_the_query_options(client, calibrated_run, tmp_path):
    audio = clip(0.3, "bonafide", seed=2)
    flac = encoded(audio, format="FLAC", subtype="PCM_16")
    answer = client.post("/v1/score", content=flac, headers={"Content-Type": "audio/flac"},
                         params={"operating_point": "bayes", "prior": 0.2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["path"] == "body" and body["operating_point"] == "bayes" and body["prior"] == 0.2
    assert_same_result(body, reference(calibrated_run, tmp_path, audio, operating_point="bayes", prior=0.2))
    assert_error(client.post("/v1/score", content=flac, headers={"Content-Type": "audio/flac"},
                             params={"operating_point": "fpr=2"}), 422, "fpr")
    assert_error(client.post("/v1/score", content=flac, params={"prior": "1.5"}), 422, "prior")


def test_a_batch_scores_each_file_and_a_bad_one_fails_alone_in_place(client, calibrated_run, tmp_path):
    good = [clip(0.3, "bonafide", seed=3), clip(0.3, "spoof", seed=4)]
    files = [("file", ("a.wav", encoded(good[0], subtype="PCM_16"), "audio/wav")),
             ("file", ("broken.wav", b"RIFF not a wave at all", "audio/wav")),
             ("file", ("b.flac", encoded(good[1], format="FLAC"), "audio/flac"))]
    answer = client.post("/v1/score/batch", files=files)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["path"] for r in results] == ["a.wav", "broken.wav", "b.flac"]
    assert results[1]["score"] is None and "cannot decode" in results[1]["error"]
    for got, audio in zip((results[0], results[2]), good):
        assert_same_result(got, reference(calibrated_run, tmp_path, audio))


def test_the_model_endpoint_shows_card_calibration_and_operating_point(client, calibrated_run):
    body = client.get("/v1/model").json()
    card = json.loads((calibrated_run / "card.json").read_text())
    calibration = json.loads((calibrated_run / "calibration.json").read_text())
    assert body["card"]["model"] == "tiny-test" and body["card"]["dev_eer"] == card["dev_eer"]
    assert body["calibration"]["slope"] == pytest.approx(calibration["slope"])
    assert body["operating_point"]["name"] == "eer" and body["operating_point"]["domain"] == "score"
    assert body["input"] == {"sample_rate": 16000, "window_samples": 1600, "window_s": 0.1, "hop_s": 0.05,
                             "pooling": body["input"]["pooling"]}
    assert body["limits"]["max_upload_mb"] == 20.0


def test_probes_docs_page_and_metrics(client, server):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["queue_capacity"] == 2 + 32
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text and "https://" not in page.text
    assert client.get("/static/app.js").status_code == 200
    openapi = client.get("/openapi.json").json()
    fields = openapi["components"]["schemas"]["ScoreResponse"]["properties"]
    assert all(field.get("description") for field in fields.values()), fields
    assert client.get("/docs").status_code == 200
    client.post("/v1/score", files={"file": ("m.wav", encoded(clip(0.5, seed=5)), "audio/wav")})
    text = client.get("/metrics").text
    assert 'plastispoof_requests_total{method="POST",path="/v1/score",status="200"}' in text
    assert "plastispoof_request_seconds_bucket" in text and "plastispoof_queue_depth 0.0" in text
    audio = float(next(line for line in text.splitlines() if line.startswith("plastispoof_audio_seconds_total"))
                  .split()[-1])
    assert audio >= 0.5


def test_cors_is_off_unless_an_origin_is_given(client, calibrated_run):
    origin = {"Origin": "http://elsewhere.example"}
    assert "access-control-allow-origin" not in client.get("/v1/model", headers=origin).headers
    live = LiveServer(calibrated_run, cors_origin="http://elsewhere.example")
    try:
        answer = httpx.get(f"{live.url}/v1/model", headers=origin)
        assert answer.headers["access-control-allow-origin"] == "http://elsewhere.example"
        other = httpx.get(f"{live.url}/v1/model", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        live.stop()


# ------------------------------------------------------------------------------------------ bad input


def test_an_empty_body(server, client):
    assert_error(client.post("/v1/score", content=b"", headers={"Content-Type": "audio/wav"}), 422, "empty")
    assert_still_serves(server.url)


def test_bytes_that_are_not_audio(server, client):
    assert_error(client.post("/v1/score", files={"file": ("x.wav", b"\x00\x01 definitely not audio" * 50)}),
                 422, "cannot decode")
    assert_still_serves(server.url)


def test_a_zero_sample_wav(server, client):
    assert_error(client.post("/v1/score", content=encoded(np.zeros(0, np.float32)),
                             headers={"Content-Type": "audio/wav"}), 422, "holds no samples")
    assert_still_serves(server.url)


def test_a_float_wav_full_of_nan(server, client):
    nan = encoded(np.full(3200, np.nan, np.float32), subtype="FLOAT")
    assert_error(client.post("/v1/score", files={"file": ("nan.wav", nan, "audio/wav")}), 422, "NaN")
    assert_still_serves(server.url)


def test_silent_audio(server, client):
    silence = encoded(np.zeros(3200, np.float32), subtype="FLOAT")
    assert_error(client.post("/v1/score", files={"file": ("s.wav", silence, "audio/wav")}), 422,
                 "digital silence")
    assert_still_serves(server.url)


def test_a_file_over_the_size_limit(tight):
    big = encoded(clip(0.9, seed=6), subtype="FLOAT")  # 57 kB > 50 kB
    assert len(big) > 0.05 * 2**20
    assert_error(httpx.post(f"{tight.url}/v1/score", content=big, headers={"Content-Type": "audio/wav"}), 413,
                 "size limit")
    assert_error(httpx.post(f"{tight.url}/v1/score", files={"file": ("big.wav", big, "audio/wav")}), 413,
                 "size limit")
    assert_still_serves(tight.url)


def test_a_file_over_the_duration_limit(tight):
    long = encoded(clip(1.5, seed=7), format="FLAC")  # small in bytes, 1.5 s > 1 s
    assert len(long) < 0.05 * 2**20
    assert_error(httpx.post(f"{tight.url}/v1/score", files={"file": ("long.flac", long, "audio/flac")}), 413,
                 "over the 1 s limit")
    assert_still_serves(tight.url)


def test_a_wrong_form_field(server, client):
    assert_error(client.post("/v1/score", files={"audio": ("a.wav", encoded(clip()), "audio/wav")}), 422,
                 "no 'file' field (fields sent: 'audio')")
    assert_still_serves(server.url)


def test_a_malformed_multipart_body(server, client):
    body = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF...."
    assert_error(client.post("/v1/score", content=body,
                             headers={"Content-Type": "multipart/form-data; boundary=xyz"}), 400, "malformed")
    assert_error(client.post("/v1/score", content=b"garbage", headers={"Content-Type": "multipart/form-data"}),
                 400, "no boundary")
    assert_still_serves(server.url)


def test_a_filename_with_path_parts_is_refused_and_never_becomes_a_path(server, client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "..")
    before = sorted(os.listdir(tmp_path.parent))
    for name in ("../../evil.wav", "..\\evil.wav", "/etc/passwd"):
        assert_error(client.post("/v1/score", files={"file": (name, encoded(clip()), "audio/wav")}), 422,
                     "path parts")
    assert sorted(os.listdir(tmp_path.parent)) == before
    assert_still_serves(server.url)


def test_more_concurrent_uploads_than_the_queue_holds_get_503_with_retry_after(tight):
    release = threading.Event()
    blockers = [tight.state.pool.submit(release.wait) for _ in range(tight.state.pool.capacity)]
    try:
        wave = encoded(clip(0.3, seed=8))
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: httpx.post(f"{tight.url}/v1/score", files={"file": ("a.wav", wave)}),
                                    range(4)))
        for answer in answers:
            assert_error(answer, 503, "busy")
            assert int(answer.headers["retry-after"]) >= 1
        assert httpx.get(f"{tight.url}/readyz").status_code == 503
    finally:
        release.set()
    for blocker in blockers:
        blocker.result(timeout=10)
    assert_still_serves(tight.url)
    assert httpx.get(f"{tight.url}/readyz").status_code == 200


def test_a_request_over_the_time_limit_gets_504(tight):
    release = threading.Event()
    blocker = tight.state.pool.submit(release.wait)  # the one worker is busy: the request waits in the queue
    try:
        answer = httpx.post(f"{tight.url}/v1/score", files={"file": ("a.wav", encoded(clip(0.3, seed=9)))})
        assert_error(answer, 504, "1 s limit")
    finally:
        release.set()
    blocker.result(timeout=10)
    assert_still_serves(tight.url)


def test_an_upload_slower_than_the_time_limit_gets_408(tight):
    with socket.create_connection(("127.0.0.1", tight.port)) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: 9000\r\n\r\n"
                     + b"RIFF")
        sock.settimeout(10)
        answer = b""
        while not answer.endswith(b"}"):
            answer += sock.recv(4096) or b"}"
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 408") and "the upload took longer than the 1 s limit" in answer
    assert_still_serves(tight.url)


def test_the_cli_refuses_bad_options_with_one_line(capsys):
    one_line_error(*run_cli(capsys, "serve", "--run", "r", "--onnx", "m.onnx"), "give one model")
    one_line_error(*run_cli(capsys, "serve", "--run", "r", "--threads", "0"), "--threads must be at least 1")


def test_a_client_that_disconnects_mid_upload(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: 100000\r\n\r\n"
                     + encoded(clip(0.3))[:5000])
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while 'status="499"' not in httpx.get(f"{server.url}/metrics").text:
        assert time.monotonic() < deadline, "the disconnect was not counted"
        time.sleep(0.05)
    assert_still_serves(server.url)


def test_an_api_key_is_needed_and_compared(calibrated_run):
    live = LiveServer(calibrated_run, api_key=b"s3cret-key")
    try:
        wave = {"file": ("a.wav", encoded(clip(0.3, seed=10)), "audio/wav")}
        assert_error(httpx.post(f"{live.url}/v1/score", files=wave), 401, "no API key")
        assert_error(httpx.post(f"{live.url}/v1/score", files=wave, headers={"Authorization": "Bearer wrong"}),
                     401, "wrong API key")
        assert_error(httpx.get(f"{live.url}/v1/model", headers={"Authorization": "Bearer s3cret-ke"}), 401, "wrong")
        assert httpx.get(f"{live.url}/").status_code == 200  # the page loads, then asks for the key
        assert_still_serves(live.url, headers={"Authorization": "Bearer s3cret-key"})
    finally:
        live.stop()


# ------------------------------------------------------------------------------------------ the CLI verb


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def grnn_run(tmp_path_factory, corpus):
    """A run of a built-in model, so a separate `plastispoof serve` process can rebuild it."""
    from plastispoof.training import train

    return train(grnn_config(tmp_path_factory.mktemp("grnn"), corpus))


def _start_cli_server(run: Path, *options: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    server = subprocess.Popen([sys.executable, "-m", "plastispoof.cli", "serve", "--run", str(run), "--port",
                               str(port), *options], stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise AssertionError(f"the server did not start: {server.stderr.read()}")
        time.sleep(0.2)


def test_sigint_stops_an_idle_server_cleanly(grnn_run):
    server, url = _start_cli_server(grnn_run)
    try:
        assert httpx.get(f"{url}/readyz").status_code == 200
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    log = server.stderr.read()
    assert "draining" in log and log.rstrip().endswith("stopped") and "Traceback" not in log


def test_the_cli_serves_logs_one_line_per_request_and_drains_on_sigterm(grnn_run):
    server, url = _start_cli_server(grnn_run, "--threads", "1")
    try:
        slow = encoded(clip(60.0, seed=12), format="FLAC")  # a request still in flight at SIGTERM
        started = time.perf_counter()
        assert httpx.post(f"{url}/v1/score", files={"file": ("long.flac", slow)}, timeout=60).status_code == 200
        seconds = time.perf_counter() - started
        repeat = max(1, int(np.ceil(1.5 / seconds)))  # ~1.5 s of scoring in flight
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.post, f"{url}/v1/score/batch", timeout=120,
                                    files=[("file", (f"long{i}.flac", slow)) for i in range(repeat)])
            deadline = time.monotonic() + 30
            while "plastispoof_queue_depth 1.0" not in httpx.get(f"{url}/metrics").text:  # the batch is scoring
                assert time.monotonic() < deadline and not in_flight.done(), "the batch never reached the pool"
                time.sleep(0.02)
            server.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            refused = httpx.get(f"{url}/v1/model")
            assert_error(refused, 503, "shutting down")
            assert refused.headers["retry-after"]
            finished = in_flight.result()
        assert finished.status_code == 200 and len(finished.json()["results"]) == repeat
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    lines = [json.loads(line) for line in server.stderr.read().splitlines() if line.startswith("{")]
    scored = [line for line in lines if line["path"] == "/v1/score"]
    assert scored and set(scored[0]) == {"method", "path", "status", "bytes", "audio_s", "ms"}
    assert scored[0]["status"] == 200 and scored[0]["audio_s"] == pytest.approx(60.0)
    assert any(line["path"] == "/v1/model" and line["status"] == 503 for line in lines)
