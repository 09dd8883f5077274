"""ASGI middleware around every request: the API key, draining at shutdown, one structured log line and the
request metrics. Written as plain ASGI (not BaseHTTPMiddleware) so WebSockets and streamed bodies pass through."""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

from plastispoof.serve.metrics import ServiceMetrics

log = logging.getLogger("plastispoof.serve")

# Reachable without the API key: the page itself (it asks for the key), the OpenAPI docs and the probes.
OPEN_PATHS = ("/", "/docs", "/openapi.json", "/healthz", "/readyz", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
KNOWN_PATHS = ("/", "/docs", "/openapi.json", "/healthz", "/readyz", "/metrics", "/v1/score", "/v1/score/batch",
               "/v1/stream", "/v1/model")


def key_matches(expected: bytes | None, presented: str | None) -> bool:
    """Whether ``presented`` (an ``Authorization`` header or a bare key) carries the API key; constant time."""
    if expected is None:
        return True
    if not presented:
        return False
    token = presented[7:] if presented.lower().startswith("bearer ") else presented
    return hmac.compare_digest(token.strip().encode(), expected)


class ServiceMiddleware:
    """Wraps the FastAPI app. ``state`` is the app's ServiceState (api_key, draining, in_flight)."""

    def __init__(self, app, state, metrics: ServiceMetrics):
        self.app, self.state, self.metrics = app, state, metrics

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        started = time.perf_counter()
        scope.setdefault("state", {})["audio_s"] = None
        seen = {"status": None, "bytes": 0}

        async def observed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            elif message["type"] == "websocket.accept":
                seen["status"] = 101
            elif message["type"] == "websocket.close" and seen["status"] is None:
                seen["status"] = 403 if message.get("code") == 1008 else 400
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, path, headers)
        self.state.in_flight += 1
        try:
            if refusal is None:
                await self.app(scope, receive, observed_send)
            elif scope["type"] == "http":
                await _json_response(observed_send, *refusal)
            else:
                await observed_send({"type": "websocket.close", "code": 1008 if refusal[0] == 401 else 1013,
                                     "reason": refusal[1][:120]})
        finally:
            self.state.in_flight -= 1
            self._record(scope, path, seen, started)

    def _refusal(self, scope, path: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str]] | None:
        if self.state.draining and path not in ("/healthz", "/metrics"):
            return 503, "the service is shutting down; retry on another instance", {"Retry-After": "5",
                                                                                    "Connection": "close"}
        needs_key = scope.get("method") != "OPTIONS" and not (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))
        # A browser cannot set headers on a WebSocket: a stream may carry the key in its first message instead.
        if needs_key and scope["type"] == "http" and not key_matches(self.state.api_key,
                                                                      headers.get("authorization")):
            problem = "no API key" if not headers.get("authorization") else "a wrong API key"
            return 401, f"this service needs an API key and the request has {problem}: send Authorization: " \
                        f"Bearer <key>", {"WWW-Authenticate": "Bearer"}
        return None

    def _record(self, scope, path: str, seen: dict[str, Any], started: float) -> None:
        seconds = time.perf_counter() - started
        # A stream's own status (an error it closed with) wins over the 101 of its handshake; 499: the client
        # left before any answer.
        status = scope["state"].get("status") or seen["status"] or 499
        label = path if path in KNOWN_PATHS or path.startswith("/static/") else "other"
        method = scope.get("method", "WS")
        self.metrics.requests.labels(method, label, str(status)).inc()
        self.metrics.latency.labels(label).observe(seconds)
        audio_s = scope["state"].get("audio_s")
        if audio_s:
            self.metrics.audio_seconds.inc(audio_s)
        log.info(json.dumps({"method": method, "path": path, "status": status, "bytes": seen["bytes"],
                             "audio_s": None if audio_s is None else round(audio_s, 3),
                             "ms": round(1000 * seconds, 1)}))


async def _json_response(send, status: int, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
