"""The FastAPI app: routes, error answers and the state they share. Every score is made by the ``score`` verb's
code (:meth:`~plastispoof.results.CalibratedScoring.iter_results` on audio decoded in memory), so the API and
``score --json`` cannot drift apart."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from importlib import resources
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from plastispoof.audio import AudioTooLong, decode_audio
from plastispoof.errors import InputError
from plastispoof.results import CalibratedScoring, DecisionRule
from plastispoof.serve.errors import ServiceError
from plastispoof.serve.limits import InferencePool, Limits
from plastispoof.serve.metrics import ServiceMetrics
from plastispoof.serve.middleware import ServiceMiddleware
from plastispoof.serve.model import model_info
from plastispoof.serve.schemas import BatchResponse, ErrorResponse, ModelResponse, ScoreResponse
from plastispoof.serve.stream import StreamSession
from plastispoof.serve.uploads import ClientGone, UploadName, read_body, uploads

AUDIO_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the audio file (WAV, FLAC, OGG, MP3, "
                                                                      "M4A, WebM, ...)"}}}},
    "audio/*": {"schema": {"type": "string", "format": "binary", "description": "raw audio bytes"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in (
    (400, "malformed multipart body"), (401, "missing or wrong API key (with --api-key-file)"),
    (413, "over the size or duration limit"), (422, "empty, undecodable, NaN or silent audio; bad options"),
    (503, "busy (queue full; see Retry-After) or shutting down"), (504, "over the time limit"))}


@dataclasses.dataclass
class ServiceState:
    """What the routes share: the scorer and its card, limits, the pool, metrics, the API key and shutdown."""

    scorer: CalibratedScoring
    card: dict[str, Any] | None
    limits: Limits
    operating_point: str | None = None
    prior: float = 0.5
    api_key: bytes | None = None
    metrics: ServiceMetrics = dataclasses.field(default_factory=ServiceMetrics)
    draining: bool = False
    in_flight: int = 0
    streams_open: int = 0
    pool: InferencePool = None  # type: ignore[assignment]
    _rules: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pool is None:
            self.pool = InferencePool(self.limits.threads, self.limits.max_queue, self.metrics.queue_depth.set)
        self.default_rule = self.rule(None, None)  # a bad --operating-point fails at start, not per request
        # What GET /v1/model answers never changes; summarising the calibration takes a while: once, at start.
        self.model_info = model_info(self.scorer, self.card, self.default_rule, dataclasses.asdict(self.limits))

    def rule(self, operating_point: str | None, prior: float | None) -> DecisionRule:
        """The decision rule of a request (its own operating point and prior, else the service's), cached."""
        key = (operating_point or self.operating_point, self.prior if prior is None else float(prior))
        if key in self._rules:
            return self._rules[key]
        rule = self.scorer.decision_rule_for(*key)
        if len(self._rules) < 256:  # bounded: clients choose the keys
            self._rules[key] = rule
        return rule

    def score(self, items: list[UploadName], rule: DecisionRule, segments: bool, single: bool) -> list[dict]:
        """Score uploads (in a pool worker) with the ``score`` verb's code: one ``score --json`` object each.
        ``single``: decoding problems are raised (413 / 422) instead of being reported in place."""
        def load(item: UploadName):
            return decode_audio(item.data, self.scorer.sample_rate, name=f"upload {str(item)!r}",
                                max_seconds=self.limits.max_duration_s)

        if single:
            try:
                waves = {id(item): load(item) for item in items}
            except AudioTooLong as err:
                raise ServiceError(413, f"{err} (--max-duration-s)") from None
            except InputError as err:
                raise ServiceError(422, str(err)) from None
            load = lambda item: waves[id(item)]  # noqa: E731 - decoded above
        results = self.scorer.iter_results(items, operating_point=rule.point, prior=rule.prior, segments=segments,
                                           load=load)
        return [result.as_dict() for result in results]


def create_app(state: ServiceState, cors_origin: str | None = None):
    """The app serving ``state``'s scorer (see :mod:`plastispoof.serve`)."""
    app = FastAPI(title="plastispoof", version=_version(), summary="Spoofed-speech (audio deepfake) detection",
                  description="Scores are those of `plastispoof score --json`: raw score (higher = more bona fide), "
                              "calibrated llr and p_bonafide, a decision at an operating point. See docs/serve.md.")
    app.state.service = state
    static = resources.files("plastispoof.serve") / "static"

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status, headers)

    @app.exception_handler(ServiceError)
    async def service_error(_request, err: ServiceError):
        return error(err.status, err.message, err.headers)

    @app.exception_handler(InputError)
    async def input_error(_request, err: InputError):
        return error(422, str(err))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, err: RequestValidationError):
        first = err.errors()[0]
        where = " ".join(str(part) for part in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg')}")

    @app.exception_handler(Exception)
    async def internal_error(_request, err: Exception):  # a bug: the traceback goes to the log, JSON to the client
        return error(500, f"internal error ({type(err).__name__}); the service log has the details")

    @app.exception_handler(HTTPException)
    async def http_error(_request, err: HTTPException):
        return error(err.status_code, str(err.detail), getattr(err, "headers", None))

    async def scored(request: Request, segments: bool, operating_point: str | None, prior: float,
                     single: bool) -> tuple[list[dict], float]:
        started = time.perf_counter()
        try:  # a client that sends its body too slowly holds a connection, not a worker: bounded all the same
            body = await asyncio.wait_for(read_body(request, state.limits.max_upload_bytes), state.limits.timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError(408, f"the upload took longer than the {state.limits.timeout_s:g} s limit "
                                    "(--timeout-s)") from None
        except ClientGone:
            request.scope["state"]["status"] = 499
            raise ServiceError(499, "the client disconnected before its upload was complete") from None
        items = uploads(body, request.headers.get("content-type"))
        rule = state.rule(operating_point, prior)
        results = await state.pool.run(state.score, items, rule, segments, single, timeout_s=state.limits.timeout_s)
        request.scope["state"]["audio_s"] = sum(r["duration_s"] or 0.0 for r in results)
        return results, round(1000 * (time.perf_counter() - started), 3)

    segments_q = Query(False, description="also the timeline: score and llr of every window")
    point_q = Query(None, description="eer | fpr=0.01 | bayes (default: the service's --operating-point)")
    prior_q = Query(None, gt=0, lt=1, description="prior probability of bona fide for p_bonafide and bayes")

    @app.post("/v1/score", response_model=ScoreResponse, responses=ERRORS, openapi_extra=AUDIO_BODY,
              summary="Score one audio file (multipart field 'file', or the raw body with an audio Content-Type)")
    async def score(request: Request, segments: bool = segments_q, operating_point: str | None = point_q,
                    prior: float | None = prior_q):
        results, elapsed = await scored(request, segments, operating_point, prior, single=True)
        if len(results) != 1:
            raise ServiceError(422, f"POST /v1/score takes one file and got {len(results)}; use /v1/score/batch")
        return {**results[0], "elapsed_ms": elapsed}

    @app.post("/v1/score/batch", response_model=BatchResponse, responses=ERRORS, openapi_extra=AUDIO_BODY,
              summary="Score several files (repeated multipart field 'file'); a bad file fails alone, in place")
    async def score_batch(request: Request, segments: bool = segments_q, operating_point: str | None = point_q,
                          prior: float | None = prior_q):
        results, elapsed = await scored(request, segments, operating_point, prior, single=False)
        return {"results": [{**result, "elapsed_ms": elapsed} for result in results], "elapsed_ms": elapsed}

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket):
        await StreamSession(websocket, state).run(websocket.headers.get("authorization"))

    @app.get("/v1/model", response_model=ModelResponse, summary="The model card, calibration and operating point")
    async def model():
        return state.model_info

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the model is loaded, the service is not shutting down, the queue "
                                "has room", responses={503: {"model": ErrorResponse}})
    async def readyz():
        if state.draining:
            raise ServiceError(503, "shutting down", {"Retry-After": "5"})
        if state.pool.depth >= state.pool.capacity:
            raise ServiceError(503, "the queue is full", {"Retry-After": str(state.pool.retry_after())})
        return {"status": "ready", "model": state.scorer.name, "queue_depth": state.pool.depth,
                "queue_capacity": state.pool.capacity}

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(state.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    if cors_origin:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[cors_origin], allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return ServiceMiddleware(app, state, state.metrics)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("plastispoof")
    except PackageNotFoundError:
        return "dev"
