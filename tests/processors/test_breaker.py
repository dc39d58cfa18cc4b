"""The breaker decider: closed → open → half-open → closed (or open again)."""

from __future__ import annotations

from taskplane.contract.breaker import (
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerState,
    BreakerStatus,
    BreakerTick,
    FailureCounted,
    FailuresReset,
)
from taskplane.contract.decider import InMemoryRunner, Output
from taskplane.contract.messages import ToolOutcome
from taskplane.processors.breaker.decider import BreakerDecider

TOOL = "graphrag.search"


def outcome(ok: bool, threshold: int = 3, cooldown: int = 60_000) -> ToolOutcome:
    return ToolOutcome(TOOL, ok, threshold, cooldown, "run-1", None if ok else "502")


def runner() -> InMemoryRunner[BreakerState, ToolOutcome | BreakerTick, object]:
    return InMemoryRunner.of(BreakerDecider())  # type: ignore[arg-type]


def opened_at(at: int) -> InMemoryRunner[BreakerState, ToolOutcome | BreakerTick, object]:
    r = runner()
    for _ in range(3):
        r.handle(TOOL, outcome(False), at)
    return r


def test_consecutive_failures_open_the_breaker_at_the_threshold() -> None:
    r = runner()
    assert r.handle(TOOL, outcome(False), 1) == [FailureCounted(TOOL, 1, 3, 60_000)]
    assert r.handle(TOOL, outcome(False), 2) == [FailureCounted(TOOL, 2, 3, 60_000)]
    events = r.handle(TOOL, outcome(False), 3)
    assert events == [FailureCounted(TOOL, 3, 3, 60_000), BreakerOpened(TOOL, 3, 60_003, "3 consecutive failures: 502")]
    state = r.states[TOOL]
    assert state is not None and state.status is BreakerStatus.OPEN and state.transitions == 1
    assert BreakerDecider().next_deadline(state) == 60_003


def test_a_success_resets_the_count() -> None:
    r = runner()
    r.handle(TOOL, outcome(False), 1)
    assert r.handle(TOOL, outcome(True), 2) == [FailuresReset(TOOL)]
    assert r.handle(TOOL, outcome(True), 3) == []
    r.handle(TOOL, outcome(False), 4)
    r.handle(TOOL, outcome(False), 5)
    state = r.states[TOOL]
    assert state is not None and state.status is BreakerStatus.CLOSED and state.consecutive_failures == 2


def test_success_on_an_unknown_tool_creates_nothing() -> None:
    r = runner()
    assert r.handle(TOOL, outcome(True), 1) == []
    assert r.states[TOOL] is None and r.outputs == []


def test_open_breaker_ignores_late_outcomes() -> None:
    r = opened_at(0)
    before = r.states[TOOL]
    assert r.handle(TOOL, outcome(False), 10) == []
    assert r.handle(TOOL, outcome(True), 11) == []
    assert r.states[TOOL] is before


def test_cooldown_half_opens_then_a_probe_success_closes() -> None:
    r = opened_at(0)
    assert r.advance(59_999) == []
    assert r.advance(60_000) == [BreakerHalfOpened(TOOL)]
    assert BreakerDecider().next_deadline(r.states[TOOL]) is None
    assert r.handle(TOOL, outcome(True), 60_500) == [BreakerClosed(TOOL)]
    state = r.states[TOOL]
    assert state == BreakerState(TOOL, BreakerStatus.CLOSED, 0, 3, 60_000, None, None, 3)


def test_failed_probe_opens_again_with_a_new_due_time() -> None:
    r = opened_at(0)
    r.advance(60_000)
    assert r.handle(TOOL, outcome(False), 61_000) == [BreakerOpened(TOOL, 61_000, 121_000, "probe failed: 502")]
    assert BreakerDecider().next_deadline(r.states[TOOL]) == 121_000


def test_tick_on_a_closed_or_unknown_breaker_does_nothing() -> None:
    decider = BreakerDecider()
    assert decider.decide(None, BreakerTick(5), 5) == []
    assert decider.decide(BreakerState(TOOL), BreakerTick(5), 5) == []


def test_every_transition_publishes_the_current_state_on_breakers() -> None:
    r = opened_at(0)
    r.advance(60_000)
    r.handle(TOOL, outcome(True), 60_001)
    assert [o.topic for o in r.outputs] == ["breakers"] * 6
    assert all(o.key == TOOL for o in r.outputs)
    assert r.outputs[-1] == Output("breakers", TOOL, r.states[TOOL])
    statuses = [o.value.status for o in r.outputs]  # type: ignore[attr-defined]
    assert statuses[-3:] == [BreakerStatus.OPEN, BreakerStatus.HALF_OPEN, BreakerStatus.CLOSED]


def test_rejection_event_leaves_the_state_alone() -> None:
    decider = BreakerDecider()
    rejected = decider.rejection(outcome(False), "bad")
    state = BreakerState(TOOL)
    assert decider.evolve(state, rejected) is state
    assert list(decider.outputs(state, rejected)) == []
