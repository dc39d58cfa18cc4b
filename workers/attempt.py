"""One granted attempt: the agent's code with journaled, breaker-checked, isolated tool
calls, ending in exactly one of CompleteTask, FailTask or ReleaseLease."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from taskplane.contract.breaker import BreakerState, BreakerStatus
from taskplane.contract.messages import (
    Assignment,
    CompleteTask,
    FailTask,
    FailureKind,
    RecordToolCall,
    ReleaseLease,
)
from taskplane.contract.plan import AgentPlan, Isolation, ToolPlan
from taskplane.streams.exceptions import StreamsError
from taskplane.workers.exceptions import (
    BreakerOpenError,
    RegistryError,
    ToolError,
    WorkerError,
    WorkerStopping,
)
from taskplane.workers.isolation import Limits, run_tool
from taskplane.workers.journal import Journal, canonical_json, idempotency_key, task_key
from taskplane.workers.sdk import AgentContext, Registry, decode_json
from taskplane.workers.settings import WorkerSettings

log = logging.getLogger(__name__)

Send = Callable[[Any], None]
SendLater = Callable[[Any], Any]  # returns something with ``wait()``: the write is confirmed
BreakerLookup = Callable[[str], BreakerState | None]


def breaker_wait_ms(state: BreakerState | None, now_ms: int) -> int | None:
    """Milliseconds until the tool may be tried again, or None when it may be called
    now (closed, half-open for a probe, or open past its cooldown)."""
    if state is None or state.status is not BreakerStatus.OPEN:
        return None
    due = state.half_open_due_ms
    if due is None:
        due = (state.opened_ms or now_ms) + state.cooldown_ms
    remaining = due - now_ms
    return remaining if remaining > 0 else None


class Attempt:
    def __init__(self, assignment: Assignment, agent: AgentPlan, registry: Registry, settings: WorkerSettings,
                 send: Send, breaker: BreakerLookup, stopping: threading.Event,
                 isolation_fallback: frozenset[Isolation] = frozenset(),
                 follow_on: Callable[[], int] = lambda: 0, send_later: SendLater | None = None) -> None:
        self.assignment = assignment
        self._agent = agent
        self._registry = registry
        self._settings = settings
        self._send = send
        self._breaker = breaker
        self._stopping = stopping
        self._fallback = isolation_fallback
        self._follow_on = follow_on  # downstream tasks this worker takes at once when done
        self._send_later = send_later
        self._unconfirmed: list[Any] = []  # tool-call records written but not yet confirmed
        self._journal = Journal(assignment.journal)
        self._call_index = 0
        self.tool_runs = 0  # tools actually executed (not answered by the journal)

    def run(self) -> str:
        """Run the agent and report the outcome; returns the outcome's command name."""
        a = self.assignment
        try:
            spec = self._registry.agent(a.task)
            context = AgentContext(a.run_id, a.task, a.attempt, a.model, decode_json(a.input),
                                   {name: decode_json(out) for name, out in a.dependency_outputs.items()},
                                   task_key(a.run_id, a.task), self._call_tool)
            output = canonical_json(spec.function(context))
        except WorkerStopping:
            self._send(ReleaseLease(a.run_id, a.task, a.worker_id, a.epoch))
            return "ReleaseLease"
        except BreakerOpenError as error:
            self._fail(str(error), FailureKind.BREAKER_OPEN, error.retry_after_ms)
            return "FailTask"
        except (TypeError, ValueError) as error:
            self._fail(f"{type(error).__name__}: {error}", FailureKind.ERROR)
            return "FailTask"
        except Exception as error:
            retryable = getattr(error, "retryable", True) is not False
            kind = FailureKind.ERROR if retryable else FailureKind.NON_RETRYABLE
            message = str(error) if isinstance(error, WorkerError) else f"{type(error).__name__}: {error}"
            self._fail(message, kind)
            return "FailTask"
        # Written behind the records on the same ordered producer, not after waiting for
        # them: the orchestrator usually takes both in one transaction.
        self._send(CompleteTask(a.run_id, a.task, a.worker_id, a.epoch, output, self._follow_on()))
        try:
            self._confirm_records()
        except StreamsError as error:  # the task succeeded: no later attempt needs the record
            log.error("attempt %s/%s: a tool-call record was lost: %s", a.run_id[:8], a.task, error)
        return "CompleteTask"

    def _fail(self, error: str, kind: FailureKind, retry_after_ms: int = 0) -> None:
        a = self.assignment
        log.info("attempt %s/%s#%s failed (%s): %s", a.run_id[:8], a.task, a.attempt, kind.value, error)
        self._send(FailTask(a.run_id, a.task, a.worker_id, a.epoch, error[:4000], kind, retry_after_ms))

    # ------------------------------------------------------------ tool calls

    def _call_tool(self, name: str, args: dict[str, Any]) -> Any:
        if self._stopping.is_set():
            raise WorkerStopping("worker is shutting down")
        index = self._call_index
        self._call_index += 1
        return self._call(name, index, args, allow_fallback=True)

    def _call(self, name: str, index: int, args: dict[str, Any], allow_fallback: bool) -> Any:
        """Journal first, then the breaker (its fallback at most once), then the tool."""
        plan = self._tool_plan(name)
        key = idempotency_key(self.assignment.run_id, self.assignment.task, name, index, args)
        recorded = self._journal.lookup(key)
        if recorded is not None:
            return decode_json(recorded)
        wait_ms = breaker_wait_ms(self._breaker(name), int(time.time() * 1000))
        if wait_ms is not None:
            if allow_fallback and plan.fallback:
                log.info("breaker open for %s: taking fallback %s", name, plan.fallback)
                return self._call(plan.fallback, index, args, allow_fallback=False)
            raise BreakerOpenError(name, wait_ms)
        return self._execute(name, plan, index, key, args)

    def _execute(self, name: str, plan: ToolPlan, index: int, key: str, args: dict[str, Any]) -> Any:
        spec = self._registry.tool(name)
        isolation = Isolation.PROCESS if plan.isolation in self._fallback else plan.isolation
        # The operator's policy wins: network only when the manifest grants it (plan.network)
        # and the code asks for it (spec.network); the code alone never gets it.
        if spec.network and not plan.network:
            log.warning("%s asks for network; the manifest does not grant it (tools[].network): denied", name)
        limits = Limits(plan.timeout_ms, self._settings.tool_memory_mb * 2**20, self._settings.tool_cpu_seconds,
                        self._settings.wasm_fuel, self._settings.wasm_memory_mb * 2**20,
                        network=plan.network and spec.network)
        tries = 1 + max(plan.retries, 0)
        self._confirm_records()  # no side effect runs while an earlier one may be unrecorded
        for attempt in range(tries):
            try:
                self.tool_runs += 1
                result = run_tool(spec, args, key, isolation, limits)
            except ToolError as error:
                self._record(name, index, key, ok=False, error=str(error))
                if not error.retryable or attempt == tries - 1 or self._stopping.is_set():
                    raise
                time.sleep(self._settings.tool_retry_backoff_ms * 2**attempt / 1000)
                continue
            text = canonical_json(result)
            self._record(name, index, key, ok=True, result=text)
            self._journal.record(key, text)
            return result
        raise AssertionError("unreachable")

    def _record(self, tool: str, index: int, key: str, *, ok: bool, result: str | None = None,
                error: str | None = None) -> None:
        a = self.assignment
        record = RecordToolCall(a.run_id, a.task, a.worker_id, a.epoch, key, tool, index, ok, result,
                                None if error is None else error[:4000])
        if self._send_later is None:
            self._send(record)
        else:  # confirmed before the next tool runs, or by the outcome written behind it
            self._unconfirmed.append(self._send_later(record))

    def _confirm_records(self) -> None:
        """Wait until every record written so far is on the log; raises if one is not."""
        pending, self._unconfirmed = self._unconfirmed, []
        for delivery in pending:
            delivery.wait()

    def _tool_plan(self, name: str) -> ToolPlan:
        for plan in self._agent.tools:
            if plan.name == name:
                return plan
        raise RegistryError(f"agent {self._agent.name!r} does not declare tool {name!r} in its manifest")
