"""The breaker decider, keyed by tool: closed → open after ``failure_threshold``
consecutive failures → half-open when the cooldown has passed → closed on a success
(or open again on a failure). The policy (threshold, cooldown) travels with each
outcome, so the latest declaration of a tool wins."""

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
from taskplane.contract.records import replace

BreakerCommand = ToolOutcome | BreakerTick


class BreakerDecider(PlainState, NoInputs):
    """``Decider[BreakerState, ToolOutcome | BreakerTick, BreakerEvent]``."""

    def decide(self, state: BreakerState | None, command: BreakerCommand, at_ms: int, given: Any = None) -> Sequence[BreakerEvent]:
        match command:
            case BreakerTick(now_ms=now):
                if (state is not None and state.status is BreakerStatus.OPEN
                        and state.half_open_due_ms is not None and now >= state.half_open_due_ms):
                    return [BreakerHalfOpened(state.tool)]
                return []
            case ToolOutcome():
                return _outcome(state or BreakerState(command.tool), command, at_ms)
            case _:
                assert_never(command)

    def evolve(self, state: BreakerState | None, event: BreakerEvent) -> BreakerState | None:
        if isinstance(event, BreakerCommandRejected):
            return state
        current = state or BreakerState(event.tool)
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
        if state is None or state.status is not BreakerStatus.OPEN:
            return None
        return state.half_open_due_ms

    def tick(self, now_ms: int) -> BreakerCommand:
        return BreakerTick(now_ms)

    def outputs(self, state: BreakerState | None, event: BreakerEvent) -> Iterable[Output]:
        if state is None or isinstance(event, BreakerCommandRejected):
            return []
        return [Output("breakers", state.tool, state)]

    def rejection(self, command: BreakerCommand, reason: str) -> BreakerEvent:
        return BreakerCommandRejected(command.tool if isinstance(command, ToolOutcome) else "", reason)


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
