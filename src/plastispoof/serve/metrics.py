"""The service's Prometheus metrics (prometheus-client, one registry per app so several apps can live in one
process): requests by path and status, latency, audio seconds scored, queue depth, open streams."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("plastispoof_requests", "HTTP requests and WebSocket streams answered",
                                ["method", "path", "status"], registry=self.registry)
        self.latency = Histogram("plastispoof_request_seconds", "Time from request to the end of the answer",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.audio_seconds = Counter("plastispoof_audio_seconds", "Seconds of audio scored",
                                     registry=self.registry)
        self.queue_depth = Gauge("plastispoof_queue_depth", "Inference jobs running or waiting in the pool",
                                 registry=self.registry)
        self.streams = Gauge("plastispoof_streams_open", "WebSocket streams open", registry=self.registry)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
