"""The event loop a worker runs its ``async def`` agents on.

One thread, many attempts: an attempt that awaits a model or an API holds a slot but
no thread, and starting one costs a callback, not a thread hand-off (at saturation the
worker's thread switches were half its CPU: docs/benchmarks.md). Tool calls of async
agents run on the loop's executor, one thread per slot at most."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class AgentLoop:
    def __init__(self, name: str, tool_threads: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._executor = ThreadPoolExecutor(tool_threads, thread_name_prefix=f"{name}-tools")
        self._loop.set_default_executor(self._executor)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._starting: list[Callable[[], Coroutine[Any, Any, Any]]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def start(self, attempt: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``attempt()`` on the loop; from any thread. RuntimeError once closed.
        Attempts started before the loop gets to them begin together: one wake-up."""
        if self._closed:
            raise RuntimeError("the agent loop is closed")
        with self._lock:
            self._starting.append(attempt)
            if len(self._starting) > 1:
                return  # the loop is already called to begin them
        self._loop.call_soon_threadsafe(self._begin_started)

    def close(self, grace_s: float) -> None:
        """Let running attempts finish for up to ``grace_s``, cancel the rest, stop."""
        self._closed = True
        deadline = time.monotonic() + grace_s
        while self._running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._cancel_all)
        self._thread.join(5)

    def _running(self) -> bool:
        return bool(self._tasks or self._starting) and self._thread.is_alive()

    def _begin_started(self) -> None:
        with self._lock:
            started, self._starting = self._starting, []
        for attempt in started:
            task = self._loop.create_task(attempt())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        # One more turn for the cancellations to run their finally blocks, then stop.
        self._loop.call_soon(self._loop.stop)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            pending = [task for task in self._tasks if not task.done()]
            if pending:
                log.warning("%d async attempt(s) still running at shutdown", len(pending))
            self._executor.shutdown(wait=False, cancel_futures=True)  # a tool ends at its timeout
            self._loop.close()
