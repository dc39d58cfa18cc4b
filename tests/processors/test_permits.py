"""The tool governor: permits by a token bucket refilled by log time, a concurrency cap
released by outcomes or expiry, composed with the breaker in one decider."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.contract.breaker import BreakerOpened, BreakerState, BreakerStatus
from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import ToolOutcome
from taskplane.contract.permits import (
    AcquirePermit,
    PermitDenied,
    PermitGranted,
    PermitLimitsSet,
    PermitQueued,
    PermitReleased,
)
from taskplane.processors.breaker.decider import BreakerDecider
from taskplane.processors.breaker.permits import HOLD_GRACE_MS, window_bound

TOOL = "openai.chat"
MINUTE = 60_000


def ask(key: str, *, rate: int = 0, period: int = MINUTE, concurrency: int = 0, hold: int = 5_000,
        worker: str = "w1", epoch: int = 1, try_no: int = 0) -> AcquirePermit:
    return AcquirePermit(TOOL, key, try_no, worker, "run-1", "parser", epoch, rate, period if rate else 0,
                         concurrency, hold)


def outcome(key: str, ok: bool = True, threshold: int = 3) -> ToolOutcome:
    return ToolOutcome(TOOL, ok, threshold, 30_000, "run-1", None if ok else "502", key)


def runner() -> InMemoryRunner[Any, Any, Any]:
    return InMemoryRunner.of(BreakerDecider())  # type: ignore[arg-type]


def granted(events: list[Any]) -> list[str]:
    return [e.key for e in events if isinstance(e, PermitGranted)]


def state(r: InMemoryRunner[Any, Any, Any]) -> BreakerState:
    s = r.states[TOOL]
    assert isinstance(s, BreakerState)
    return s


def test_the_bucket_refills_by_log_time_only() -> None:
    r = runner()  # 60/min: a call a second, a bucket of 2
    first = r.handle(TOOL, ask("a", rate=60), 1_000)
    assert isinstance(first[0], PermitLimitsSet) and granted(first) == ["a"]
    assert granted(r.handle(TOOL, ask("b", rate=60), 1_000)) == ["b"]
    assert [type(e) for e in r.handle(TOOL, ask("c", rate=60), 1_000)] == [PermitQueued]
    assert r.decider.next_deadline(state(r)) == 2_000  # the next whole call
    assert granted(r.advance(1_999)) == []
    assert granted(r.advance(2_000)) == ["c"]
    assert state(r).permits_granted == 3


def test_queued_requests_are_served_first_come_first_served() -> None:
    r = runner()
    for key in "abcde":
        r.handle(TOOL, ask(key, rate=60), 0)
    assert granted(r.advance(1_000)) == ["c"]
    assert granted(r.advance(3_000)) == ["d", "e"]  # two seconds refilled two calls


def test_concurrency_is_released_by_the_calls_outcome() -> None:
    r = runner()
    assert granted(r.handle(TOOL, ask("a", concurrency=1), 0)) == ["a"]
    assert granted(r.handle(TOOL, ask("b", concurrency=1), 1)) == []
    events = r.handle(TOOL, outcome("a"), 2)
    assert events[0] == PermitReleased(TOOL, "a", 0, "outcome") and granted(events) == ["b"]
    assert [h.key for h in state(r).holders] == ["b"]


def test_a_dead_holders_permit_expires_after_the_tools_timeout() -> None:
    r = runner()
    r.handle(TOOL, ask("a", concurrency=1, hold=5_000), 0)
    r.handle(TOOL, ask("b", concurrency=1, hold=5_000), 0)
    assert r.decider.next_deadline(state(r)) == 5_000 + HOLD_GRACE_MS
    events = r.advance(5_000 + HOLD_GRACE_MS)
    assert events[0] == PermitReleased(TOOL, "a", 0, "expired") and granted(events) == ["b"]


def test_the_calls_next_attempt_takes_over_its_permit_without_a_new_token() -> None:
    r = runner()
    r.handle(TOOL, ask("a", rate=60, concurrency=1), 0)
    events = r.handle(TOOL, ask("a", rate=60, concurrency=1, worker="w2", epoch=2), 10)
    assert granted(events) == ["a"] and not events[0].token
    assert state(r).holders[0].worker_id == "w2" and state(r).permits_granted == 1
    stale = r.handle(TOOL, ask("a", rate=60, concurrency=1, worker="w1", epoch=1), 20)
    assert [type(e) for e in stale] == [PermitDenied]


def test_a_resend_while_waiting_changes_nothing() -> None:
    r = runner()
    r.handle(TOOL, ask("a", concurrency=1), 0)
    assert [type(e) for e in r.handle(TOOL, ask("b", concurrency=1), 0)] == [PermitQueued]
    assert r.handle(TOOL, ask("b", concurrency=1), 5) == []


def test_an_open_breaker_grants_nothing_and_denies_whoever_waits() -> None:
    r = runner()
    r.handle(TOOL, ask("a", concurrency=1), 0)
    r.handle(TOOL, ask("b", concurrency=1), 0)
    r.handle(TOOL, outcome("x", ok=False), 1)
    r.handle(TOOL, outcome("y", ok=False), 2)
    events = r.handle(TOOL, outcome("a", ok=False), 3)  # the third failure opens it, and frees a's permit
    kinds = [type(e) for e in events]
    assert BreakerOpened in kinds and PermitDenied in kinds and not granted(events)
    denied = next(e for e in events if isinstance(e, PermitDenied))
    assert denied.key == "b" and denied.reason == "breaker open" and denied.retry_after_ms == 30_000
    assert state(r).status is BreakerStatus.OPEN and state(r).waiting == ()
    assert [type(e) for e in r.handle(TOOL, ask("c", concurrency=1), 4)] == [PermitDenied]
    r.advance(30_003)  # half-open: permits again
    assert granted(r.handle(TOOL, ask("d", concurrency=1), 30_004)) == ["d"]


def test_answers_go_to_the_workers_inbox_and_the_breakers_table_stays_small() -> None:
    r = runner()
    r.handle(TOOL, ask("a", concurrency=1, worker="w7"), 0)
    r.handle(TOOL, ask("b", concurrency=1, worker="w8"), 0)
    assert [(o.topic, o.key) for o in r.outputs] == [("inbox", "w7")]
    r.handle(TOOL, outcome("z", ok=False, threshold=1), 1)
    table = [o for o in r.outputs if o.topic == "breakers"]
    assert table and table[-1].value.waiting == () and table[-1].value.holders == ()
    denial = [o for o in r.outputs if o.topic == "inbox" and o.key == "w8"]
    assert len(denial) == 1 and isinstance(denial[0].value, PermitDenied)


def test_a_restart_decides_the_same() -> None:
    def drive(restart: bool) -> list[Any]:
        r = runner()
        for i in range(6):
            r.handle(TOOL, ask(f"k{i}", rate=60, concurrency=3), i * 100)
            if restart and i == 3:
                r.restart(BreakerDecider())  # type: ignore[arg-type]
        r.handle(TOOL, outcome("k0"), 700)
        r.advance(3_000)
        return [e for _, e in r.log]

    assert drive(True) == drive(False)


def test_changed_limits_apply_from_the_next_request() -> None:
    r = runner()
    r.handle(TOOL, ask("a", rate=60), 0)
    r.handle(TOOL, ask("b", rate=60), 0)
    events = r.handle(TOOL, ask("c", rate=600), 0)  # a redeploy raised it: the bucket keeps its fill
    assert isinstance(events[0], PermitLimitsSet) and not granted(events)
    assert granted(r.advance(100)) == ["c"]


requests = st.lists(
    st.tuples(st.sampled_from([0, 0, 0, 1, 5, 20, 100, 400, 1_000]), st.sampled_from(["ask", "ask", "ok", "fail", "tick"]),
              st.integers(0, 200)),
    min_size=1, max_size=120)


@settings(max_examples=150, deadline=None)
@given(requests, st.sampled_from([1, 2, 3, 7, 60, 100, 500]), st.sampled_from([1_000, 10_000, 60_000]), st.integers(0, 5))
def test_never_more_grants_than_the_limits_allow(steps: list[tuple[int, str, int]], rate: int, period: int,
                                                 concurrency: int) -> None:
    """In any window of one period, at most ``window_bound(rate)`` new permits; never more
    holders than ``concurrency``; a run restarted half way decides the same."""
    r, now, holders_max = runner(), 0, 0
    for index, (gap, kind, pick) in enumerate(steps):
        now += gap * period // 100
        match kind:  # a new call asks; an outcome is some earlier call's (or a resend's)
            case "ask":
                key = f"k{index if pick % 4 else pick % (index + 1)}"
                r.handle(TOOL, ask(key, rate=rate, period=period, concurrency=concurrency, hold=period), now)
            case "ok" | "fail":
                r.handle(TOOL, outcome(f"k{pick % (index + 1)}", kind == "ok", threshold=10), now)
            case _:
                r.advance(now)
        if r.states.get(TOOL) is not None:
            holders_max = max(holders_max, len(state(r).holders))
    assert not r.failures
    folded = None  # invariant 4: the state is the fold of the events (a lost changelog rebuilds the same)
    for _, event in r.log:
        folded = r.decider.evolve(folded, event)
    assert folded == r.states.get(TOOL)
    times = sorted(e.granted_ms for _, e in r.log if isinstance(e, PermitGranted) and e.token)
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + period) <= window_bound(rate)
    if concurrency:
        assert holders_max <= concurrency


def test_an_idle_bucket_holds_only_its_burst() -> None:
    r = runner()
    r.handle(TOOL, ask("first", rate=100), 0)
    events = [e for i in range(10) for e in r.handle(TOOL, ask(f"k{i}", rate=100), 3_600_000)]
    assert len(granted(events)) == 2 == window_bound(100) - 100 + 1  # 2 % of 100


def test_a_queued_request_taken_over_tells_the_attempt_it_replaced() -> None:
    r = runner()
    r.handle(TOOL, ask("a", concurrency=1), 0)
    r.handle(TOOL, ask("b", concurrency=1, worker="w1", epoch=1), 0)
    events = r.handle(TOOL, ask("b", concurrency=1, worker="w2", epoch=2), 5)
    assert [type(e) for e in events] == [PermitQueued, PermitDenied]
    assert (events[1].worker_id, events[1].epoch) == ("w1", 1)
    assert [(w.key, w.worker_id) for w in state(r).waiting] == [("b", "w2")]
    assert [type(e) for e in r.handle(TOOL, ask("b", concurrency=1, worker="w1", epoch=1), 6)] == [PermitDenied]
    assert granted(r.handle(TOOL, outcome("a"), 7)) == ["b"] and state(r).holders[0].worker_id == "w2"
