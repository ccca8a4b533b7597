"""Renders off the event loop: a bounded thread pool, a bounded queue, a deadline per request.

The kernels release the GIL, so threads render in parallel while the event loop keeps
accepting and answering. A request past the queue is refused at once (503 with Retry-After)
rather than waiting behind work it would time out on; a request not done by its deadline is
answered 504. Its render cannot be interrupted mid-kernel, so its slot is held until the thread
is done: the bound counts work actually running, not only work still wanted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .params import RequestError

__all__ = ["RenderScheduler"]

T = TypeVar("T")


class RenderScheduler:
    def __init__(self, threads: int, queue_size: int, deadline_s: float) -> None:
        self.threads = threads
        self.capacity = threads + queue_size
        self.deadline_s = deadline_s
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="voxelflow-render")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def _release(self, _: Any) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a render thread; RequestError 503 when full, 504 past the deadline."""
        with self._lock:
            if self._pending >= self.capacity:
                raise RequestError(
                    f"the server is busy ({self._pending} renders running or queued); retry shortly",
                    status=503,
                )
            self._pending += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.deadline_s)
        except asyncio.TimeoutError:
            future.cancel()  # only takes effect while still queued
            raise RequestError(
                f"the render did not finish within the deadline of {self.deadline_s:g} s", status=504
            ) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
