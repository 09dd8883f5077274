"""What the service allows (sizes, durations, queue, time) and the bounded pool inference runs in.

Every request's decoding and scoring runs in :class:`InferencePool`: ``threads`` workers and at most
``max_queue`` jobs waiting behind them. A job that finds the pool full is refused at once (503 with
Retry-After) instead of joining an unbounded backlog, and a request waits at most ``timeout_s`` for its job
(504 after that; the job still holds its place in the pool until it ends, so the bound stays true).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from plastispoof.errors import InputError
from plastispoof.serve.errors import ServiceError

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """The service's limits (``plastispoof serve`` options)."""

    max_upload_mb: float = 20.0  # a request body larger than this is refused (413)
    max_duration_s: float = 600.0  # audio longer than this is refused (413); a stream is closed
    threads: int = 2  # inference workers
    max_queue: int = 32  # jobs waiting for a worker at most; more get 503
    timeout_s: float = 60.0  # the longest a request waits for its result (504)
    stream_idle_s: float = 30.0  # a stream that sends nothing for this long is closed
    max_streams: int = 16  # WebSocket streams open at once at most (each holds its audio); more get 503

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_duration_s", "timeout_s", "stream_idle_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.threads < 1 or self.max_queue < 0 or self.max_streams < 1:
            raise InputError(f"--threads must be at least 1, --max-queue at least 0 and max_streams at least 1, got "
                             f"{self.threads}, {self.max_queue} and {self.max_streams}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class InferencePool:
    """A thread pool with a bounded queue; see the module notes. ``on_depth(n)`` hears every change of the number
    of jobs in it (running + waiting), for the queue-depth gauge."""

    def __init__(self, threads: int, max_queue: int, on_depth: Callable[[int], None] = lambda depth: None):
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="score")
        self.threads = threads
        self.capacity = threads + max_queue
        self._on_depth = on_depth
        self._lock = threading.Lock()
        self._depth = 0
        self._mean_job_s = 0.5  # running mean of job times, for Retry-After

    @property
    def depth(self) -> int:
        return self._depth

    def submit(self, fn: Callable[..., T], *args: Any) -> Future:
        """Run ``fn(*args)`` in the pool, or 503 at once when it holds ``capacity`` jobs already."""
        with self._lock:
            if self._depth >= self.capacity:
                raise ServiceError(503, f"the service is busy: {self._depth} jobs running or waiting (the queue "
                                        f"holds {self.capacity - self.threads}); retry later",
                                   {"Retry-After": str(self.retry_after())})
            self._depth += 1
            depth = self._depth
        self._on_depth(depth)
        started = time.perf_counter()
        future = self._executor.submit(fn, *args)
        future.add_done_callback(lambda _: self._release(time.perf_counter() - started))
        return future

    async def run(self, fn: Callable[..., T], *args: Any, timeout_s: float) -> T:
        """``fn(*args)`` run in the pool and awaited at most ``timeout_s`` seconds (504 after that)."""
        future = self.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError(504, f"scoring took longer than the {timeout_s:g} s limit (--timeout-s)") from None

    def retry_after(self) -> int:
        """Seconds after which the queue has likely room again (at least 1)."""
        return max(1, math.ceil(self._mean_job_s * max(self._depth, 1) / self.threads))

    def _release(self, seconds: float) -> None:
        with self._lock:
            self._depth -= 1
            depth = self._depth
            self._mean_job_s = 0.9 * self._mean_job_s + 0.1 * seconds
        self._on_depth(depth)

    def shutdown(self) -> None:
        """Let running and queued jobs finish, then stop the workers."""
        self._executor.shutdown(wait=True)
