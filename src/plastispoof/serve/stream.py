"""``WS /v1/stream``: live scoring of audio as it arrives, window by window, ending with the ``score --segments``
result of the whole audio.

Protocol (JSON text messages, audio as binary messages):

1. client: ``{"format": "pcm16", "sample_rate": 48000}`` (16-bit little-endian mono PCM at the declared rate) or
   ``{"format": "container"}`` (the bytes of a file in any format the decoder reads, decoded once complete); optional
   ``"operating_point"``, ``"prior"``, ``"name"`` and ``"api_key"`` (browsers cannot send headers on a WebSocket).
2. server: ``{"type": "ready", ...}`` with the window and hop the model scores.
3. client: binary chunks, then ``{"end": true}``.
4. server, as soon as each window of the model's input length is complete: ``{"type": "window", "index", "start_s",
   "end_s", "score", "llr", "decision", "running": {"windows", "score", "llr", "p_bonafide", "decision",
   "duration_s"}}`` -- ``running`` is the verdict of the audio so far (mean of the window scores so far).
5. server, after ``end``: ``{"type": "result", ...}``: the ``score --json --segments`` object of the whole audio plus
   ``elapsed_ms``; then the socket closes (1000).

Windows follow docs/decisions.md exactly as ``score`` cuts them (:func:`plastispoof.results.window_starts`): starts
every half window while audio arrives; at the end, one more window aligned to the end when the last start is not on
the hop grid, or a single repeat-padded window when all the audio is shorter than one. The final message is built by
the same code as ``score`` (:meth:`~plastispoof.results.CalibratedScoring.file_result`), so the two agree to
float32 rounding. Errors: ``{"type": "error", "error", "status"}``, then the socket closes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np

from plastispoof.audio import SILENCE_LEVEL, AudioTooLong, decode_audio
from plastispoof.errors import InputError
from plastispoof.results import window_starts
from plastispoof.scoring import file_score
from plastispoof.serve.errors import ServiceError
from plastispoof.serve.middleware import key_matches

FORMATS = ("pcm16", "container")
CLOSE_CODES = {401: 1008, 413: 1009, 422: 1003, 400: 1003, 503: 1013, 504: 1011, 408: 1008}


class StreamBuffer:
    """The audio of one stream at the model's rate and which of its windows are scored; pure computation."""

    def __init__(self, window: int, sample_rate: int, source_rate: int):
        import soxr

        self.window, self.hop, self.rate = window, max(window // 2, 1), sample_rate
        self.resampler = None if source_rate == sample_rate else soxr.ResampleStream(
            source_rate, sample_rate, 1, dtype="float32", quality="HQ")
        self._data = np.zeros(max(window, 1 << 15), np.float32)
        self.length = 0
        self.scored = 0  # windows already scored (and sent)

    @property
    def samples(self) -> np.ndarray:
        return self._data[: self.length]

    def add(self, samples: np.ndarray, last: bool = False) -> None:
        if self.resampler is not None:
            samples = self.resampler.resample_chunk(samples, last=last)
        needed = self.length + len(samples)
        if needed > len(self._data):
            grown = np.zeros(max(needed, 2 * len(self._data)), np.float32)
            grown[: self.length] = self.samples
            self._data = grown
        self._data[self.length: needed] = samples
        self.length = needed

    def complete_windows(self) -> tuple[list[int], np.ndarray]:
        """Starts and samples of the windows complete now and not yet scored (on the hop grid)."""
        starts = []
        while (self.scored + len(starts)) * self.hop + self.window <= self.length:
            starts.append((self.scored + len(starts)) * self.hop)
        return starts, self._stack(starts)

    def final_windows(self) -> tuple[list[int], np.ndarray]:
        """The windows still to score once the audio is complete: those ``score`` cuts that were not cut yet."""
        from plastispoof.audio import sliding_windows

        starts = window_starts(self.length, self.window)[self.scored:]
        if self.length <= self.window:
            return starts, sliding_windows(self.samples, self.window)[self.scored:]
        return starts, self._stack(starts)

    def _stack(self, starts: list[int]) -> np.ndarray:
        if not starts:
            return np.zeros((0, self.window), np.float32)
        return np.stack([self._data[start: start + self.window] for start in starts])


class StreamSession:
    """One ``/v1/stream`` connection (``state``: the app's ServiceState)."""

    def __init__(self, websocket, state):
        self.ws, self.state = websocket, state
        self.scorer = state.scorer
        self.limits = state.limits
        self.started = time.perf_counter()
        self.scores: list[float] = []

    async def run(self, authorization: str | None) -> None:
        if self.state.streams_open >= self.limits.max_streams:  # each open stream holds its audio in memory
            await self.ws.accept()
            await self._fail(ServiceError(503, f"the service is busy: {self.state.streams_open} streams are open "
                                               f"(at most {self.limits.max_streams}); retry later",
                                          {"Retry-After": "5"}))
            return
        self.state.streams_open += 1
        self.state.metrics.streams.inc()
        try:
            await self._run(authorization)
        except ServiceError as err:
            await self._fail(err)
        finally:
            self.state.streams_open -= 1
            self.state.metrics.streams.dec()

    async def _receive(self) -> dict[str, Any]:
        from starlette.websockets import WebSocketDisconnect

        try:
            message = await asyncio.wait_for(self.ws.receive(), self.limits.stream_idle_s)
        except asyncio.TimeoutError:
            raise ServiceError(408, f"the stream sent nothing for {self.limits.stream_idle_s:g} s; closing it"
                               ) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        return message

    async def _run(self, authorization: str | None) -> None:
        from starlette.websockets import WebSocketDisconnect

        await self.ws.accept()
        try:
            start = parse_start(await self._receive())
            if not (key_matches(self.state.api_key, authorization) or
                    (authorization is None and key_matches(self.state.api_key, start.get("api_key")))):
                raise ServiceError(401, "this service needs an API key: send it as \"api_key\" in the first "
                                        "message or as Authorization: Bearer <key>")
            try:
                rule = self.state.rule(start.get("operating_point"), start.get("prior"))
            except InputError as err:
                raise ServiceError(422, str(err)) from None
            name = str(start.get("name") or "stream")
            await self.ws.send_json({"type": "ready", "format": start["format"], "sample_rate": self.scorer.sample_rate,
                                     "window_s": self.scorer.num_samples / self.scorer.sample_rate,
                                     "hop_s": max(self.scorer.num_samples // 2, 1) / self.scorer.sample_rate,
                                     "operating_point": rule.point, "threshold": rule.threshold,
                                     "domain": rule.domain, "rule": rule.text})
            if start["format"] == "pcm16":
                result = await self._pcm(name, int(start["sample_rate"]), rule)
            else:
                result = await self._container(name, rule)
        except WebSocketDisconnect:
            return  # the client left: nothing to answer, the slot is free
        self.ws.scope["state"]["audio_s"] = result.get("duration_s")
        await self.ws.send_json({"type": "result", **result,
                                 "elapsed_ms": round(1000 * (time.perf_counter() - self.started), 3)})
        await self.ws.close(1000)

    async def _pcm(self, name: str, source_rate: int, rule) -> dict[str, Any]:
        buffer = StreamBuffer(self.scorer.num_samples, self.scorer.sample_rate, source_rate)
        received = 0
        while True:
            message = await self._receive()
            if message.get("bytes") is not None:
                chunk = message["bytes"]
                if len(chunk) % 2:
                    raise ServiceError(422, "a pcm16 chunk has an odd number of bytes; send whole 16-bit samples")
                received += len(chunk) // 2
                if received / source_rate > self.limits.max_duration_s:
                    raise ServiceError(413, f"the stream is over the {self.limits.max_duration_s:g} s limit "
                                            "(--max-duration-s)")
                buffer.add(np.frombuffer(chunk, "<i2").astype(np.float32) / 32768.0)
                await self._score(buffer, *buffer.complete_windows(), rule, received / source_rate)
            elif is_end(message.get("text")):
                buffer.add(np.zeros(0, np.float32), last=True)
                break
            else:
                raise ServiceError(422, "after the first message a stream sends binary audio chunks and then "
                                        "{\"end\": true}; got another text message")
        if buffer.length == 0:
            raise ServiceError(422, "the stream ended before any audio was sent")
        if np.abs(buffer.samples).max() < SILENCE_LEVEL:
            raise ServiceError(422, f"the stream is digital silence (every sample below {SILENCE_LEVEL:g})")
        await self._score(buffer, *buffer.final_windows(), rule, received / source_rate)
        return await self._result(name, buffer.samples.copy(), rule)

    async def _container(self, name: str, rule) -> dict[str, Any]:
        data = bytearray()
        while True:
            message = await self._receive()
            if message.get("bytes") is not None:
                data += message["bytes"]
                if len(data) > self.limits.max_upload_bytes:
                    raise ServiceError(413, f"the stream is over the size limit ({self.limits.max_upload_mb:g} MB, "
                                            "--max-upload-mb)")
            elif is_end(message.get("text")):
                break
            else:
                raise ServiceError(422, "a container stream sends binary chunks and then {\"end\": true}")

        def decode() -> np.ndarray:
            return decode_audio(bytes(data), self.scorer.sample_rate, name=f"stream {name}",
                                max_seconds=self.limits.max_duration_s)

        try:
            wave = await self.state.pool.run(decode, timeout_s=self.limits.timeout_s)
        except AudioTooLong as err:
            raise ServiceError(413, str(err)) from None
        except InputError as err:
            raise ServiceError(422, str(err)) from None
        buffer = StreamBuffer(self.scorer.num_samples, self.scorer.sample_rate, self.scorer.sample_rate)
        buffer.add(wave)
        await self._score(buffer, *buffer.final_windows(), rule, len(wave) / self.scorer.sample_rate)
        return await self._result(name, wave, rule)

    async def _score(self, buffer: StreamBuffer, starts: list[int], windows: np.ndarray, rule,
                     received_s: float) -> None:
        """Score ``windows`` in the pool and send one message per window."""
        if not starts:
            return
        size = self.scorer.batch_size
        batches = [np.ascontiguousarray(windows[i: i + size], dtype=np.float32) for i in range(0, len(windows), size)]
        scores = await self.state.pool.run(lambda: np.concatenate([self.scorer.score_batch(b) for b in batches]),
                                           timeout_s=self.limits.timeout_s)
        for start, score in zip(starts, scores):
            score = float(score)
            self.scores.append(score)
            buffer.scored += 1
            llr, _, decision = self.scorer.verdict(score, rule)
            running = file_score(np.asarray(self.scores, np.float32))
            run_llr, run_p, run_decision = self.scorer.verdict(running, rule)
            end = min(start + buffer.window, max(buffer.length, 1))
            await self.ws.send_json({
                "type": "window", "index": len(self.scores) - 1, "start_s": start / buffer.rate,
                "end_s": end / buffer.rate, "score": score, "llr": llr, "decision": decision,
                "running": {"windows": len(self.scores), "score": running, "llr": run_llr, "p_bonafide": run_p,
                            "decision": run_decision, "duration_s": received_s}})

    async def _result(self, name: str, wave: np.ndarray, rule) -> dict[str, Any]:
        per_window = np.asarray(self.scores, np.float32)
        return self.scorer.file_result(name, wave, per_window, rule, segments=True).as_dict()

    async def _fail(self, err: ServiceError) -> None:
        from starlette.websockets import WebSocketDisconnect, WebSocketState

        if self.ws.application_state != WebSocketState.CONNECTED:
            return
        try:
            await self.ws.send_json({"type": "error", "error": err.message, "status": err.status, **(
                {"retry_after": int(err.headers["Retry-After"])} if "Retry-After" in err.headers else {})})
            await self.ws.close(CLOSE_CODES.get(err.status, 1011), err.message[:120])
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client is gone already
        self.ws.scope["state"]["status"] = err.status


def parse_start(message: dict[str, Any]) -> dict[str, Any]:
    """The first message of a stream, checked (422 for anything else)."""
    text = message.get("text")
    try:
        start = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        start = None
    if not isinstance(start, dict):
        raise ServiceError(422, "a stream starts with a JSON text message such as {\"format\": \"pcm16\", "
                                "\"sample_rate\": 16000} or {\"format\": \"container\"}")
    if start.get("format") not in FORMATS:
        raise ServiceError(422, f"unknown stream format {start.get('format')!r}; known: {', '.join(FORMATS)}")
    if start["format"] == "pcm16":
        rate = start.get("sample_rate")
        if not isinstance(rate, int) or isinstance(rate, bool) or not 1000 <= rate <= 384000:
            raise ServiceError(422, f"a pcm16 stream declares its sample rate as a whole number of Hz between 1000 "
                                    f"and 384000; got {rate!r}")
    prior = start.get("prior", 0.5)
    if not isinstance(prior, (int, float)) or isinstance(prior, bool):
        raise ServiceError(422, f"prior must be a number between 0 and 1; got {prior!r}")
    return start


def is_end(text: str | None) -> bool:
    if text is None:
        return False
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(message, dict) and (message.get("end") is True or message.get("type") == "end")
