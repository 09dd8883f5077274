"""The service's one error: a status code and one sentence, answered as ``{"error": ..., "status": ...}``."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses: ``status`` (413, 422, 503, ...), one clear ``message`` and extra headers
    (``Retry-After`` for 503)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}
