"""``AsyncClient``: the ``Client`` for asyncio code, method for method.

    async with AsyncClient() as client:
        run = await client.submit("document-pipeline", {"folder": "docs/"})
        print(await run.result(timeout=60))

Calls that talk to Kafka run in a worker thread; waits are woken by the client's one
follower (``loop.call_soon_threadsafe``), so a thousand awaited results cost no
thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from taskplane.client._approvals import ApprovalInfo
from taskplane.client._run_follower import Watch
from taskplane.client._run_view import TERMINAL, RunInfo, RunStatus, RunView
from taskplane.client.client import Client, RunHandle, outcome
from taskplane.exceptions import RunTimeout
from taskplane.streams.settings import StackSettings

_CHECK_EVERY_S = 1.0


class AsyncClient:
    """The asyncio face of ``Client`` (same settings, same arguments)."""

    def __init__(self, bootstrap_servers: str | None = None, *, topic_prefix: str | None = None,
                 settings: StackSettings | None = None, kafka_options: Mapping[str, Any] | None = None) -> None:
        self.sync = Client(bootstrap_servers, topic_prefix=topic_prefix, settings=settings,
                           kafka_options=kafka_options)

    async def submit(self, system: str, input: Any = None, idempotency_key: str | None = None, *,
                     tenant: str | None = None, priority: int | None = None) -> AsyncRunHandle:
        handle = await asyncio.to_thread(lambda: self.sync.submit(system, input, idempotency_key,
                                                                  tenant=tenant, priority=priority))
        return AsyncRunHandle(self, handle)

    async def submit_many(self, system: str, inputs: list[Any],
                          idempotency_keys: list[str | None] | None = None, *,
                          tenant: str | None = None, priority: int | None = None) -> list[AsyncRunHandle]:
        handles = await asyncio.to_thread(lambda: self.sync.submit_many(system, inputs, idempotency_keys,
                                                                        tenant=tenant, priority=priority))
        return [AsyncRunHandle(self, handle) for handle in handles]

    async def run(self, run_id: str) -> AsyncRunHandle:
        return AsyncRunHandle(self, await asyncio.to_thread(self.sync.run, run_id))

    async def runs(self, system: str | None = None, status: RunStatus | None = None) -> list[RunInfo]:
        return await asyncio.to_thread(self.sync.runs, system, status)

    async def cancel(self, run_id: str, reason: str = "cancelled by a client") -> None:
        await asyncio.to_thread(self.sync.cancel, run_id, reason)

    async def replay(self, run_id: str, task: str, requested_by: str = "client") -> AsyncRunHandle:
        return AsyncRunHandle(self, await asyncio.to_thread(self.sync.replay, run_id, task, requested_by))

    async def approvals(self, status: str | None = "pending") -> list[ApprovalInfo]:
        return await asyncio.to_thread(self.sync.approvals, status)

    async def approve(self, approval_id: str, **options: Any) -> ApprovalInfo:
        return await asyncio.to_thread(lambda: self.sync.approve(approval_id, **options))

    async def deny(self, approval_id: str, reason: str, **options: Any) -> ApprovalInfo:
        return await asyncio.to_thread(lambda: self.sync.deny(approval_id, reason, **options))

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _wait(self, watch: Watch, until: Callable[[RunView], bool], timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake(_event: Any) -> None:
            loop.call_soon_threadsafe(changed.set)

        watch.listen(wake)
        try:
            deadline = None if timeout is None else loop.time() + timeout
            while True:
                changed.clear()
                with watch.changed:
                    if until(watch.view):
                        return
                self.sync._ready().follower.check()
                left = _CHECK_EVERY_S if deadline is None else min(_CHECK_EVERY_S, deadline - loop.time())
                if left <= 0:
                    raise RunTimeout(watch.view.stalled(timeout))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), left)
        finally:
            watch.unlisten(wake)


class AsyncRunHandle:
    """The asyncio face of ``RunHandle``."""

    def __init__(self, client: AsyncClient, handle: RunHandle) -> None:
        self._client, self._handle = client, handle
        self.run_id = handle.run_id

    def __repr__(self) -> str:
        return f"AsyncRunHandle({self.run_id!r}, {self.status().status})"

    def status(self) -> RunInfo:
        """A snapshot; no I/O (the follower keeps it current)."""
        return self._handle.status()

    async def result(self, timeout: float | None = None) -> dict[str, Any]:
        """As ``RunHandle.result``: outputs of the final tasks, or ``RunFailed`` /
        ``RunTimeout``."""
        await self._client._wait(self._handle._watch, lambda view: view.settled, timeout)
        await asyncio.to_thread(self._handle._complete)  # a referenced plan (once), off the loop
        return outcome(self._handle._watch)

    async def cancel(self, reason: str = "cancelled by a client") -> None:
        await self._client.cancel(self.run_id, reason)

    async def replay(self, task: str) -> None:
        await self._client.replay(self.run_id, task)

    async def events(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """As ``RunHandle.events``: the run's events as they happen, until it finished."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        await asyncio.to_thread(self._handle._complete, True)
        watch, seen = self._handle._watch, 0
        while True:
            with watch.changed:
                fresh = watch.events[seen:]
                done = watch.view.status in TERMINAL
            seen += len(fresh)
            for event in fresh:
                yield event
            if done:
                return
            left = None if deadline is None else max(0.0, deadline - loop.time())
            await self._client._wait(watch, lambda view, n=seen: view.applied > n, left)
