"""One granted attempt: the agent's code with journaled, breaker-checked, isolated tool
calls, ending in exactly one of CompleteTask, FailTask or ReleaseLease."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskplane.contract.breaker import BreakerState, BreakerStatus
from taskplane.contract.governance import Usage, budgeted
from taskplane.contract.messages import (
    Assignment,
    CompleteTask,
    FailTask,
    FailureKind,
    RecordToolCall,
    ReleaseLease,
    RequestApproval,
)
from taskplane.contract.plan import AgentPlan, Isolation, SystemPlan, ToolPlan
from taskplane.contract.trace_ids import header, tool_span_id
from taskplane.streams.exceptions import StreamsError
from taskplane.workers.approvals import ApprovalPending, preview
from taskplane.workers.exceptions import (
    BreakerOpenError,
    RegistryError,
    ToolError,
    WorkerError,
    WorkerStopping,
)
from taskplane.workers.governance import Governor, UsageAnswers, split_result, usage
from taskplane.workers.isolation import Limits, run_tool
from taskplane.workers.journal import Journal, canonical_json, idempotency_key
from taskplane.workers.sdk import AgentContext, Registry, decode_json
from taskplane.workers.settings import WorkerSettings

if TYPE_CHECKING:
    from taskplane.workers.permits import PermitGate
    from taskplane.workers.tracing import AttemptContexts

log = logging.getLogger(__name__)

Send = Callable[[Any], None]
SendLater = Callable[[Any], Any]  # returns something with ``wait()``: the write is confirmed
BreakerLookup = Callable[[str], BreakerState | None]


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Host:
    """What an attempt takes from the process it runs in: the clock its breaker checks
    read, how a tool call runs (isolated, timed out) and how it waits between a tool's
    own retries. A worker uses the real ones; ``taskplane simulate`` passes a virtual
    clock and an in-process runner, so the same attempt logic runs in virtual time."""

    now_ms: Callable[[], int] = _wall_ms
    run_tool: Callable[[Any, dict[str, Any], str, Isolation, Limits], Any] = run_tool
    sleep: Callable[[float], None] = time.sleep


REAL_HOST = Host()


def granted_agent(plan: SystemPlan, assignment: Assignment) -> AgentPlan:
    """The task's agent with the tool policy of the run's own plan (carried by the grant);
    older grants without it fall back to the system's latest plan."""
    try:
        latest = plan.agent(assignment.task)
    except KeyError:
        latest = AgentPlan(assignment.task, None, (), ())
    if not assignment.tools:
        return latest
    return AgentPlan(latest.name, assignment.model, assignment.tools, latest.dependencies)


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
                 follow_on: Callable[[], int] = lambda: 0, send_later: SendLater | None = None,
                 host: Host = REAL_HOST, contexts: AttemptContexts | None = None,
                 permits: PermitGate | None = None, run_stopped: Callable[[str], bool] = lambda _run_id: False,
                 answers: UsageAnswers | None = None) -> None:
        self.assignment = assignment
        self._contexts = contexts  # TASKPLANE_WORKER_TRACING: the attempt's span is current
        self._agent = agent
        self._registry = registry
        self._settings = settings
        self._send = send
        self._breaker = breaker
        self._stopping = stopping
        self._fallback = isolation_fallback
        self._follow_on = follow_on  # downstream tasks this worker takes at once when done
        self._send_later = send_later
        self._host = host
        self._permits = permits  # the tool governor; None: limits are not enforced
        self._unconfirmed: list[Any] = []  # tool-call records written but not yet confirmed
        self._journal = Journal(assignment.journal, assignment.granted_approvals)
        self._approval: RequestApproval | None = None  # the call this attempt ended on, waiting for a person
        self._call_index = 0
        self._turn: asyncio.Lock | None = None  # async agents: their tool calls take turns
        self.tool_runs = 0  # tools actually executed (not answered by the journal)
        # Usage reported since the last record: it rides on the next one (workers/governance.py).
        self._usage: list[Usage] = []
        self._run_stopped = run_stopped  # the orchestrator's notice that the run stopped
        self._governor = None if assignment.policy is None else Governor(
            assignment.policy, assignment.run_tokens, assignment.run_cost_micros, assignment.model)
        # A run with a budget answers each record with its usage; the next call waits for it.
        self._answers = answers if budgeted(assignment.policy) else None
        self._records = 0

    def run(self) -> str:
        """Run a plain ``def`` agent on this thread and report the outcome; returns the
        outcome's command name."""
        contexts = self._contexts
        token = None if contexts is None else contexts.enter(self.assignment)
        try:
            command: Any = self._completion(self._registry.agent(self.assignment.task).function(self._context()))
        except (Exception, ApprovalPending) as error:
            command = self._failure(error)
        command = self._approval or command  # whatever the agent did after asking
        if contexts is not None:
            contexts.leave(token)
        self._send(command)
        return self._reported(command)

    async def run_async(self, send: Callable[[Any], Awaitable[None]]) -> str:
        """``run`` for an ``async def`` agent, on the worker's event loop: the agent is
        awaited, its tool calls run off the loop, and ``send`` awaits the outcome's write."""
        self._turn = asyncio.Lock()
        contexts = self._contexts
        token = None if contexts is None else contexts.enter(self.assignment)  # this asyncio task's
        try:
            output = await self._registry.agent(self.assignment.task).function(self._context())
            command: Any = self._completion(output)
        except (Exception, ApprovalPending) as error:
            command = self._failure(error)
        command = self._approval or command
        if contexts is not None:
            contexts.leave(token)
        await send(command)
        return self._reported(command)

    def _context(self) -> AgentContext:
        a = self.assignment
        if self._governor is not None:  # a model not allowed never runs the agent
            self._governor.check_model(a.model)
        return AgentContext(a.run_id, a.task, a.attempt, a.model, decode_json(a.input),
                            {name: decode_json(out) for name, out in a.dependency_outputs.items()},
                            self._call_tool,
                            self._call_tool_async if self._turn is not None else None, a.epoch,
                            self._report_usage)

    def _report_usage(self, tokens: int, cost: object, model: str | None) -> None:
        """``ctx.report_usage``: kept for the next record; counted against the budget now."""
        report = usage(tokens, cost, model if model is not None else self.assignment.model)
        self._usage.append(report)
        if self._governor is not None:
            self._governor.add(report)
            if model is not None:
                self._governor.check_model(model)

    def _take_usage(self, extra: Usage | None = None) -> tuple[Usage, ...]:
        taken, self._usage = self._usage, []
        if extra is not None:
            taken.append(extra)
        return tuple(taken)

    def _completion(self, output: Any) -> CompleteTask:
        a = self.assignment
        return CompleteTask(a.run_id, a.task, a.worker_id, a.epoch, canonical_json(output), self._follow_on(),
                            self._take_usage())

    def _failure(self, error: BaseException) -> Any:
        """The command that reports what the agent raised (or a non-JSON output)."""
        a = self.assignment
        if isinstance(error, ApprovalPending):
            return error.request
        if isinstance(error, WorkerStopping):
            return ReleaseLease(a.run_id, a.task, a.worker_id, a.epoch)
        if isinstance(error, BreakerOpenError):
            return self._failed(str(error), FailureKind.BREAKER_OPEN, error.retry_after_ms)
        if isinstance(error, (TypeError, ValueError)):
            return self._failed(f"{type(error).__name__}: {error}", FailureKind.ERROR)
        retryable = getattr(error, "retryable", True) is not False
        kind = FailureKind.ERROR if retryable else FailureKind.NON_RETRYABLE
        message = str(error) if isinstance(error, WorkerError) else f"{type(error).__name__}: {error}"
        return self._failed(message, kind)

    def _failed(self, error: str, kind: FailureKind, retry_after_ms: int = 0) -> FailTask:
        a = self.assignment
        log.info("attempt %s/%s#%s failed (%s): %s", a.run_id[:8], a.task, a.attempt, kind.value, error)
        return FailTask(a.run_id, a.task, a.worker_id, a.epoch, error[:4000], kind, retry_after_ms, self._take_usage())

    def _reported(self, command: Any) -> str:
        """After the outcome's write: tool-call records written before it are on the log
        too (same ordered producer); a lost one is logged, the task stays done."""
        if isinstance(command, CompleteTask):
            try:
                self._confirm_records()
            except StreamsError as error:  # the task succeeded: no later attempt needs the record
                a = self.assignment
                log.error("attempt %s/%s: a tool-call record was lost: %s", a.run_id[:8], a.task, error)
        return type(command).__name__

    # ------------------------------------------------------------ tool calls

    def _call_tool(self, name: str, args: dict[str, Any]) -> Any:
        if self._turn is not None:
            raise RegistryError(f"agent {self._agent.name!r} is async def: use `await ctx.call_tool_async(...)` "
                                "(ctx.call_tool would block every agent on the worker's event loop)")
        return self._call(name, self._next_index(), args, allow_fallback=True)

    async def _call_tool_async(self, name: str, args: dict[str, Any]) -> Any:
        index = self._next_index()  # taken in call order, before waiting for the turn
        assert self._turn is not None
        async with self._turn:  # FIFO: one tool at a time, in call order
            return await asyncio.get_running_loop().run_in_executor(None, self._call, name, index, args, True)

    def _next_index(self) -> int:
        if self._stopping.is_set():
            raise WorkerStopping("worker is shutting down")
        if self._approval is not None:  # the attempt ended on a call waiting for a person
            raise ApprovalPending(self._approval)
        index = self._call_index
        self._call_index += 1
        return index

    def _call(self, name: str, index: int, args: dict[str, Any], allow_fallback: bool) -> Any:
        """Journal first, then the breaker (its fallback at most once), then the tool."""
        if self._approval is not None:  # a call queued behind the one that asked: the attempt is over
            raise ApprovalPending(self._approval)
        plan = self._tool_plan(name)
        key = idempotency_key(self.assignment.run_id, self.assignment.task, name, index, args)
        recorded = self._journal.lookup(key)
        if recorded is not None:
            return decode_json(recorded)
        if self._governor is not None:  # before the call, never after (invariant 8)
            self._governed_wait()
            self._governor.before_call(name, self._run_stopped(self.assignment.run_id))
        if plan.approval_required and not self._journal.granted(key):
            self._ask(name, index, key, args)
        wait_ms = breaker_wait_ms(self._breaker(name), self._host.now_ms())
        if wait_ms is not None:
            if allow_fallback and plan.fallback:
                log.info("breaker open for %s: taking fallback %s", name, plan.fallback)
                return self._call(plan.fallback, index, args, allow_fallback=False)
            raise BreakerOpenError(name, wait_ms)
        if not (plan.limited and allow_fallback and plan.fallback):
            return self._execute(name, plan, index, key, args)
        ran = self.tool_runs
        try:
            return self._execute(name, plan, index, key, args)
        except BreakerOpenError:  # the governor saw the breaker open before the first try: nothing ran
            if self.tool_runs != ran:
                raise
            log.info("breaker open for %s (its permit denied): taking fallback %s", name, plan.fallback)
            return self._call(plan.fallback, index, args, allow_fallback=False)

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
            if plan.limited and self._permits is not None:  # waits; no retry burned, the lease renewed
                self._permits.acquire(self.assignment, plan, key, attempt, self._stopping)
            try:
                self.tool_runs += 1
                call_args = args if not spec.traceparent else {**args, "traceparent": self._tool_header(key, attempt)}
                result = self._host.run_tool(spec, call_args, key, isolation, limits)
            except ToolError as error:
                self._record(name, index, key, ok=False, error=str(error))
                if not error.retryable or attempt == tries - 1 or self._stopping.is_set():
                    raise
                self._host.sleep(self._settings.tool_retry_backoff_ms * 2**attempt / 1000)
                continue
            result, reported = split_result(result)
            if reported is not None and self._governor is not None:
                self._governor.add(reported)
            text = canonical_json(result)
            self._record(name, index, key, ok=True, result=text, usage=reported)
            self._journal.record(key, text)
            return result
        raise AssertionError("unreachable")

    def _ask(self, name: str, index: int, key: str, args: dict[str, Any]) -> None:
        """End the attempt on this call: it waits for a person (the lease goes back)."""
        a = self.assignment
        self._confirm_records()  # the request follows every record this attempt wrote
        self._approval = RequestApproval(a.run_id, a.task, a.worker_id, a.epoch, key, name, index,
                                         preview(canonical_json(args)), f"{self._agent.name} calls {name}")
        log.info("attempt %s/%s#%s: %s waits for approval %s", a.run_id[:8], a.task, a.attempt, name, key)
        raise ApprovalPending(self._approval)
    def _governed_wait(self) -> None:
        """Wait for the orchestrator's answer to this attempt's last record: the run's
        usage, other attempts' included. Without an answer in time, the attempt's own
        view decides (its lease outlives the wait)."""
        if self._answers is None or self._records == 0 or self._governor is None:
            return
        a = self.assignment
        answer = self._answers.wait((a.run_id, a.task, a.epoch), self._records, a.lease_timeout_ms / 3000,
                                    lambda: self._run_stopped(a.run_id))
        if answer is not None:
            self._governor.seen(*answer)

    def _tool_header(self, key: str, attempt_try: int) -> str:
        """The traceparent of this try's execute_tool span (the tracer derives the same id)."""
        a = self.assignment
        return header(a.run_id, tool_span_id(a.run_id, a.task, a.epoch, key, attempt_try + 1))

    def _record(self, tool: str, index: int, key: str, *, ok: bool, result: str | None = None,
                error: str | None = None, usage: Usage | None = None) -> None:
        a = self.assignment
        record = RecordToolCall(a.run_id, a.task, a.worker_id, a.epoch, key, tool, index, ok, result,
                                None if error is None else error[:4000], self._take_usage(usage))
        if self._answers is not None:
            self._records += 1
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
