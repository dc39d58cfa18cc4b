"""The breaker decider, keyed by tool: closed → open after ``failure_threshold``
consecutive failures → half-open when the cooldown has passed → closed on a success
(or open again on a failure). The policy (threshold, cooldown) travels with each
outcome, so the latest declaration of a tool wins.

It is also the tool governor: ``AcquirePermit`` is granted by the tool's rate limit and
concurrency (``permits.py``), an outcome releases its call's permit, and an open breaker
grants none, in the same decision as the breaker's."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, assert_never

from taskplane.contract.breaker import (
    BreakerClosed,
    BreakerCommandRejected,
    BreakerEvent,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerState,
    BreakerStatus,
    BreakerTick,
    FailureCounted,
    FailuresReset,
)
from taskplane.contract.decider import NoInputs, Output, PlainState
from taskplane.contract.messages import ToolOutcome
from taskplane.contract.permits import AcquirePermit, PermitDenied, PermitEvent, PermitGranted
from taskplane.contract.records import replace
from taskplane.processors.breaker import permits

BreakerCommand = ToolOutcome | BreakerTick | AcquirePermit
GovernorEvent = BreakerEvent | PermitEvent
_BREAKER_EVENTS = (FailureCounted, FailuresReset, BreakerOpened, BreakerHalfOpened, BreakerClosed)


class BreakerDecider(PlainState, NoInputs):
    """``Decider[BreakerState, ToolOutcome | BreakerTick | AcquirePermit, GovernorEvent]``."""

    def decide(self, state: BreakerState | None, command: BreakerCommand, at_ms: int,
               given: Any = None) -> Sequence[GovernorEvent]:
        match command:
            case BreakerTick(now_ms=now):
                if state is None:
                    return []
                events: list[GovernorEvent] = []
                if (state.status is BreakerStatus.OPEN
                        and state.half_open_due_ms is not None and now >= state.half_open_due_ms):
                    events.append(BreakerHalfOpened(state.tool))
                events += permits.expire(state, now)
                return events + permits.serve(self._after(state, events), now)
            case ToolOutcome():
                current = state or BreakerState(command.tool)
                events = [*permits.release(current, command.key), *_outcome(current, command, at_ms)]
                return events + permits.serve(self._after(current, events), at_ms)
            case AcquirePermit():
                return permits.acquire(state or BreakerState(command.tool), command, at_ms)
            case _:
                assert_never(command)

    def _after(self, state: BreakerState, events: Sequence[GovernorEvent]) -> BreakerState:
        for event in events:
            state = self.evolve(state, event) or state
        return state

    def evolve(self, state: BreakerState | None, event: GovernorEvent) -> BreakerState | None:
        if isinstance(event, BreakerCommandRejected):
            return state
        current = state or BreakerState(event.tool)
        if not isinstance(event, _BREAKER_EVENTS):
            return permits.evolve(current, event)
        match event:
            case FailureCounted(consecutive_failures=count, failure_threshold=threshold, cooldown_ms=cooldown):
                return replace(current, consecutive_failures=count, failure_threshold=threshold,
                               cooldown_ms=cooldown)
            case FailuresReset():
                return replace(current, consecutive_failures=0)
            case BreakerOpened(opened_ms=opened, half_open_due_ms=due):
                return replace(current, status=BreakerStatus.OPEN, opened_ms=opened, half_open_due_ms=due,
                               transitions=current.transitions + 1)
            case BreakerHalfOpened():
                return replace(current, status=BreakerStatus.HALF_OPEN, half_open_due_ms=None,
                               transitions=current.transitions + 1)
            case BreakerClosed():
                return replace(current, status=BreakerStatus.CLOSED, consecutive_failures=0, opened_ms=None,
                               half_open_due_ms=None, transitions=current.transitions + 1)
            case _:
                assert_never(event)

    def next_deadline(self, state: BreakerState | None) -> int | None:
        if state is None:
            return None
        times = [t for t in (permits.next_deadline(state),
                             state.half_open_due_ms if state.status is BreakerStatus.OPEN else None)
                 if t is not None]
        return min(times) if times else None

    def tick(self, now_ms: int) -> BreakerCommand:
        return BreakerTick(now_ms)

    def outputs(self, state: BreakerState | None, event: GovernorEvent) -> Iterable[Output]:
        if isinstance(event, PermitGranted | PermitDenied):  # the answer the waiting worker reads
            return [Output("inbox", event.worker_id, event)]
        if state is None or not isinstance(event, _BREAKER_EVENTS):
            return []
        # The table every worker reads: the breaker, without the permit queue and holders.
        return [Output("breakers", state.tool, replace(state, holders=(), waiting=()))]

    def rejection(self, command: BreakerCommand, reason: str) -> GovernorEvent:
        tool = command.tool if isinstance(command, ToolOutcome | AcquirePermit) else ""
        return BreakerCommandRejected(tool, reason)


def _outcome(state: BreakerState, outcome: ToolOutcome, at_ms: int) -> list[BreakerEvent]:
    tool = state.tool
    threshold = max(1, outcome.failure_threshold)
    match state.status:
        case BreakerStatus.OPEN:
            return []  # calls started before the breaker opened may still report
        case BreakerStatus.HALF_OPEN:
            if outcome.ok:
                return [BreakerClosed(tool)]
            return [_opened(tool, outcome, at_ms, "probe failed")]
        case BreakerStatus.CLOSED:
            if outcome.ok:
                return [FailuresReset(tool)] if state.consecutive_failures > 0 else []
            count = state.consecutive_failures + 1
            events: list[BreakerEvent] = [FailureCounted(tool, count, threshold, outcome.cooldown_ms)]
            if count >= threshold:
                events.append(_opened(tool, outcome, at_ms, f"{count} consecutive failures"))
            return events
        case _:
            assert_never(state.status)


def _opened(tool: str, outcome: ToolOutcome, at_ms: int, why: str) -> BreakerOpened:
    reason = f"{why}: {outcome.error}" if outcome.error else why
    return BreakerOpened(tool, at_ms, at_ms + outcome.cooldown_ms, reason)
