"""Shared by the serve tests: a calibrated tiny run, and the real uvicorn server on a free loopback port in a
thread (:class:`LiveServer`), so the tests talk HTTP and WebSocket to it like any client."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from tiny_run import SAMPLE_RATE, bonafide_like, spoof_like, tiny_config

from plastispoof.serve.app import ServiceState, create_app
from plastispoof.serve.limits import Limits
from plastispoof.serve.model import load_scorer


def calibrated_tiny_run(out: Path, corpus: Path) -> Path:
    """A trained ``tiny-test`` run (windows of 1600 samples = 0.1 s) with its calibration.json."""
    from plastispoof.calibrate import calibrate
    from plastispoof.training import train

    run = train(tiny_config(out, corpus))
    calibrate(run, "asv19-la", corpus, "dev")
    return run


class LiveServer:
    """``create_app`` served by a real uvicorn.Server on 127.0.0.1, on a port the OS picked."""

    def __init__(self, run: Path, cors_origin: str | None = None, api_key: bytes | None = None, **limits):
        import uvicorn

        scorer, card = load_scorer(run=run)
        self.state = ServiceState(scorer, card, Limits(**limits), api_key=api_key)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/v1/stream"
        config = uvicorn.Config(create_app(self.state, cors_origin), log_level="warning", access_log=False,
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.state.pool.shutdown()


def encoded(x: np.ndarray, format: str = "WAV", subtype: str | None = None, rate: int = SAMPLE_RATE) -> bytes:
    """``x`` as the bytes of an audio file (in memory)."""
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def clip(seconds: float = 0.5, kind: str = "bonafide", seed: int = 0) -> np.ndarray:
    """Audio the tiny model was trained to tell apart: a harmonic tone (bona fide) or noise (spoof)."""
    rng = np.random.default_rng(seed)
    make = bonafide_like if kind == "bonafide" else spoof_like
    return make(rng, int(seconds * SAMPLE_RATE))
