"""``plastispoof serve``: a detection service (FastAPI, served by uvicorn) with a web page.

``POST /v1/score`` and ``/v1/score/batch`` answer the ``score --json`` object of uploads decoded in memory;
``WS /v1/stream`` scores live audio window by window and ends with the ``score --segments`` result; ``GET /v1/model``
is the model card with its calibration and operating point; ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus)
and ``/docs`` (OpenAPI); ``/`` is the page. Modules: server.py (run_server, draining shutdown), app.py (routes,
ServiceState), uploads.py (bounded bodies, in-memory multipart), stream.py (the WebSocket protocol), limits.py
(Limits, the bounded inference pool), middleware.py (API key, log line, metrics), metrics.py, schemas.py,
model.py (the scorer behind it), static/ (the page). docs/serve.md documents the API.

FastAPI, uvicorn and prometheus-client are imported only here, never by ``import plastispoof``.
"""

from __future__ import annotations

from typing import Any


def run_server(**options: Any) -> None:
    """See :func:`plastispoof.serve.server.run_server`."""
    from plastispoof.serve.server import run_server as run

    run(**options)
