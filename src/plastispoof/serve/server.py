"""Running the service: load the model, build the app, serve it with uvicorn until SIGINT / SIGTERM.

Shutdown drains: the first signal marks the service as draining (``/readyz`` and every new request answer 503 with
Retry-After), requests and streams in flight finish, then uvicorn stops; a second signal stops at once. A service
that still has work after ``timeout_s`` + 5 s stops anyway.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from plastispoof.errors import InputError
from plastispoof.serve.app import ServiceState, create_app
from plastispoof.serve.limits import Limits
from plastispoof.serve.model import load_scorer

log = logging.getLogger("plastispoof.serve")


def read_api_key(path: str | Path | None) -> bytes | None:
    """The key in ``path`` (surrounding whitespace dropped), or None when no file is given."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--api-key-file {path} does not exist")
    key = path.read_bytes().strip()
    if not key:
        raise InputError(f"--api-key-file {path} is empty")
    return key


def run_server(*, run: str | Path | None = None, onnx: str | Path | None = None, model: str | None = None,
               weights: str | Path | None = None, calibration: str | Path | None = None,
               operating_point: str | None = None, prior: float = 0.5, precision: str = "float32",
               host: str = "127.0.0.1", port: int = 8000,
               api_key_file: str | Path | None = None, cors_origin: str | None = None, **limits: Any) -> None:
    """``plastispoof serve``: serve a model (exactly one of ``run``, ``onnx``, ``model`` + ``weights``) over HTTP
    until SIGINT / SIGTERM (see the module notes), within ``limits`` (the fields of :class:`Limits`). Logs one
    JSON line per request on stderr."""
    import uvicorn

    limits = Limits(**limits)
    api_key = read_api_key(api_key_file)
    scorer, card = load_scorer(run=run, onnx=onnx, model=model, weights=weights, calibration=calibration,
                               precision=precision)
    if "torch" in sys.modules:  # the workers share the cores: one worker's operators should not take them all
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // limits.threads))
    state = ServiceState(scorer, card, limits, operating_point, prior, api_key)
    app = create_app(state, cors_origin)
    _log_to_stderr()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=limits.timeout_s + 5)
    server = draining_server(config, state)
    log.info(f"serving {scorer.name} on http://{host}:{port}/ (API docs /docs; Ctrl-C stops)")
    try:
        server.run()
    finally:
        state.pool.shutdown()
    log.info("stopped")


def draining_server(config, state: ServiceState):
    """A uvicorn.Server whose first exit signal drains ``state`` (see the module notes)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if state.draining:  # a second signal: stop now
                self.force_exit = self.should_exit = True
                return
            state.draining = True
            log.info("draining: new requests get 503; stopping when the requests in flight are done")
            threading.Thread(target=self._stop_when_idle, daemon=True).start()

        def _stop_when_idle(self) -> None:
            deadline = time.monotonic() + state.limits.timeout_s + 5
            while state.in_flight > 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.should_exit = True

    return DrainingServer(config)


def _log_to_stderr() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
