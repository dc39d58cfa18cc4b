"""The dispatcher decider: deficit round robin by weight, caps, priority with aging,
and the window's accounting (taken, done, dropped, expired)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.contract.decider import InMemoryRunner, Output
from taskplane.contract.messages import RunSubmitted, TaskReady, WorkItem
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, SystemPlan
from taskplane.contract.scheduling import (
    DispatchNotice,
    DispatchOffer,
    SchedulingPolicy,
    WorkReleased,
)
from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.processors.dispatch.fair import ACTIVE_MS
from taskplane.processors.orchestrator.evolve import evolve
from taskplane.processors.orchestrator.outputs import outputs

SYSTEM = "sys"


def runner() -> InMemoryRunner[Any, Any, Any]:
    return InMemoryRunner.of(DispatchDecider())


def offer(run: str, tenant: str, priority: int = 0, weight: int = 1, cap: int = 0, window: int = 1,
          aging_ms: int = 30_000, attempt: int = 1, task: str = "t") -> DispatchOffer:
    return DispatchOffer(SYSTEM, run, task, attempt, tenant, priority, weight, cap, aging_ms, window, 60_000)


def released(r: InMemoryRunner[Any, Any, Any]) -> list[WorkReleased]:
    return [e for _k, e in r.log if isinstance(e, WorkReleased)]


def take_and_finish(r: InMemoryRunner[Any, Any, Any], event: WorkReleased, at: int) -> None:
    r.handle(SYSTEM, DispatchNotice(SYSTEM, event.run_id, event.task, event.attempt, "taken"), at)
    r.handle(SYSTEM, DispatchNotice(SYSTEM, event.run_id, event.task, event.attempt, "done"), at)


def drain(r: InMemoryRunner[Any, Any, Any], count: int, start: int = 100) -> list[WorkReleased]:
    """Serve ``count`` releases one at a time (each taken and done before the next)."""
    served: list[WorkReleased] = []
    at = start
    while len(served) < count:
        pending = released(r)[len(served):]
        if not pending:
            break
        for event in pending:
            served.append(event)
            at += 1
            take_and_finish(r, event, at)
    return served[:count]


def test_an_offer_is_released_to_work_at_once_when_the_window_has_room() -> None:
    r = runner()
    events = r.handle(SYSTEM, offer("r1", "acme", window=4), 10)
    assert [type(e).__name__ for e in events] == ["OfferQueued", "WorkReleased"]
    assert [o.value for o in r.outputs] == [WorkItem("r1", SYSTEM, "t", 1)]


def test_the_window_holds_releases_until_one_is_taken() -> None:
    r = runner()
    for i in range(3):
        r.handle(SYSTEM, offer(f"r{i}", "acme", window=2), i)
    assert [e.run_id for e in released(r)] == ["r0", "r1"]
    r.handle(SYSTEM, DispatchNotice(SYSTEM, "r0", "t", 1, "taken"), 10)
    assert [e.run_id for e in released(r)] == ["r0", "r1", "r2"]


def test_a_notice_for_another_attempt_or_an_unknown_offer_changes_nothing() -> None:
    r = runner()
    r.handle(SYSTEM, offer("r0", "acme", window=1), 1)
    r.handle(SYSTEM, offer("r1", "acme", window=1), 2)
    assert r.handle(SYSTEM, DispatchNotice(SYSTEM, "r0", "t", 2, "taken"), 3) == []
    assert r.handle(SYSTEM, DispatchNotice(SYSTEM, "zz", "t", 1, "taken"), 3) == []
    assert [e.run_id for e in released(r)] == ["r0"]


def test_weights_share_releases_in_proportion() -> None:
    r = runner()
    for i in range(60):
        r.handle(SYSTEM, offer(f"a{i}", "a", weight=3), i)
        r.handle(SYSTEM, offer(f"b{i}", "b", weight=1), i)
    served = drain(r, 40)
    shares = Counter(e.tenant for e in served)
    assert shares["a"] == 30 and shares["b"] == 10


def test_a_flooded_tenant_delays_another_by_one_quantum_at_most() -> None:
    r = runner()
    for i in range(500):
        r.handle(SYSTEM, offer(f"a{i}", "a", weight=2), i)
    drain(r, 5)
    r.handle(SYSTEM, offer("b0", "b"), 1_000)
    after = [e.run_id for e in drain(r, 8, start=2_000)][5:]
    assert "b0" in after[:3]  # a's current quantum (2) at most, then b


def test_a_tenant_at_its_cap_is_passed_over_until_an_attempt_ends() -> None:
    r = runner()
    for i in range(5):
        r.handle(SYSTEM, offer(f"a{i}", "a", cap=2, window=10), i)
    assert [e.run_id for e in released(r)] == ["a0", "a1"]
    r.handle(SYSTEM, DispatchNotice(SYSTEM, "a0", "t", 1, "taken"), 10)
    assert len(released(r)) == 2  # taken still runs: it counts against the cap
    r.handle(SYSTEM, DispatchNotice(SYSTEM, "a0", "t", 1, "done"), 11)
    assert [e.run_id for e in released(r)] == ["a0", "a1", "a2"]


def test_higher_priority_goes_first_within_a_tenant() -> None:
    r = runner()
    r.handle(SYSTEM, offer("first", "a", window=1), 0)  # fills the window
    for i in range(3):
        r.handle(SYSTEM, offer(f"low{i}", "a", priority=1, window=1), 1 + i)
    r.handle(SYSTEM, offer("high", "a", priority=5, window=1), 10)
    order = [e.run_id for e in drain(r, 5)]
    assert order[:2] == ["first", "high"]


def test_aging_lets_a_long_waiting_low_priority_offer_pass() -> None:
    r = runner()
    r.handle(SYSTEM, offer("first", "a", window=1, aging_ms=1_000), 0)
    r.handle(SYSTEM, offer("old-low", "a", priority=1, window=1, aging_ms=1_000), 0)
    r.handle(SYSTEM, offer("new-high", "a", priority=3, window=1, aging_ms=1_000), 5_000)
    take_and_finish(r, released(r)[0], 5_000)  # low aged 5 levels by now: 1 + 5 > 3
    assert released(r)[-1].run_id == "old-low"


def test_dropped_run_leaves_the_queue_and_the_window() -> None:
    r = runner()
    r.handle(SYSTEM, offer("r0", "a", window=1), 0)
    r.handle(SYSTEM, offer("r1", "a", window=1), 1)
    r.handle(SYSTEM, offer("r2", "a", window=1), 2)
    r.handle(SYSTEM, DispatchNotice(SYSTEM, "r1", "", 0, "dropped"), 3)  # cancelled while queued
    r.handle(SYSTEM, DispatchNotice(SYSTEM, "r0", "", 0, "dropped"), 4)  # cancelled while released
    assert [e.run_id for e in released(r)] == ["r0", "r2"]


def test_a_released_offer_never_taken_expires_by_tick() -> None:
    r = runner()
    r.handle(SYSTEM, offer("r0", "a", window=1), 0)
    r.handle(SYSTEM, offer("r1", "a", window=1), 1)
    state = r.states[SYSTEM]
    assert DispatchDecider().next_deadline(state) == 60_000
    assert r.advance(59_999) == []
    r.advance(60_000)
    assert [e.run_id for e in released(r)] == ["r0", "r1"]


def test_restart_from_snapshots_decides_the_same() -> None:
    def play(restart: bool) -> list[Any]:
        r = runner()
        for i in range(20):
            r.handle(SYSTEM, offer(f"a{i}", "a", weight=2, priority=1 + i % 5, window=3), i)
            r.handle(SYSTEM, offer(f"b{i}", "b", cap=2, window=3), i)
            if restart and i % 7 == 0:
                r.restart()
        drain(r, 30)
        return r.log

    assert play(True) == play(False)


@settings(max_examples=60, deadline=None)
@given(weights=st.lists(st.integers(1, 5), min_size=2, max_size=4),
       arrivals=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 5)), min_size=20, max_size=120))
def test_no_backlogged_tenant_starves_and_shares_follow_weights(weights: list[int],
                                                                 arrivals: list[tuple[int, int]]) -> None:
    r = runner()
    tenants = [f"t{i}" for i in range(len(weights))]
    for i, (who, priority) in enumerate(arrivals):
        index = who % len(tenants)
        r.handle(SYSTEM, offer(f"x{i}", tenants[index], priority, weights[index], window=2), i)
    for index, tenant in enumerate(tenants):  # every tenant stays backlogged throughout
        for j in range(200):
            r.handle(SYSTEM, offer(f"{tenant}-{j}", tenant, 3, weights[index], window=2), 1_000 + j)
    rounds = sum(weights) * 10
    served = Counter(e.tenant for e in drain(r, len(arrivals) + rounds, start=10_000)[len(arrivals):])
    total = sum(served.values())
    for index, tenant in enumerate(tenants):
        assert served[tenant] > 0  # nobody starves
        share = weights[index] / sum(weights)
        assert abs(served[tenant] / total - share) <= (max(weights) + 1) / total  # within one quantum


def test_folding_the_events_rebuilds_the_decided_state() -> None:
    """A lost changelog is rebuilt by folding `dispatch-events`: the same state."""
    r = runner()
    for i in range(12):
        r.handle(SYSTEM, offer(f"a{i}", "a", weight=2, priority=1 + i % 5, window=3, cap=4), i)
        r.handle(SYSTEM, offer(f"b{i}", "b", window=3), i)
    drain(r, 10)
    r.handle(SYSTEM, DispatchNotice(SYSTEM, "b11", "", 0, "dropped"), 500)
    r.advance(10_000_000)
    decider, folded = DispatchDecider(), None
    for _key, event in r.log:
        folded = decider.evolve(folded, event)
    assert folded == r.states[SYSTEM]


def test_only_dispatched_runs_write_offers_instead_of_work_items() -> None:
    def first_offer(plan: SystemPlan, tenant: str = "", priority: int = 0) -> Output:
        state = evolve(None, RunSubmitted("r1", plan, "{}", 0, None, (), tenant, priority))
        return outputs(state, TaskReady("r1", "a", 1))[0]

    plain = SystemPlan("s", "v", (AgentPlan("a", None, (), ()),), ExecutionPolicy())
    direct = first_offer(plain)
    assert direct.topic == "work" and direct.value == WorkItem("r1", "s", "a", 1)
    for dispatched in (first_offer(plain, tenant="acme"), first_offer(plain, priority=5),
                       first_offer(SystemPlan("s", "v", plain.agents, ExecutionPolicy(), scheduling=SchedulingPolicy()))):
        assert dispatched.topic == "dispatch" and dispatched.key == "s"
        assert isinstance(dispatched.value, DispatchOffer)


def test_a_trickling_tenant_keeps_its_share_of_the_window_free_of_a_flood() -> None:
    """While b trickles runs in, a's flood holds at most its share of the window, so b's
    next offer is released at once, behind at most that many of a's items on `work`;
    once b has been quiet for ACTIVE_MS, a has the whole window again."""
    r = runner()
    for i in range(100):
        r.handle(SYSTEM, offer(f"a{i}", "a", window=8), i)
    assert len(released(r)) == 8  # a alone: the whole window
    r.handle(SYSTEM, offer("b0", "b", window=8), 200)
    assert len(released(r)) == 8  # b's first offer finds the window full: it waits for a take
    first = released(r)[0]
    r.handle(SYSTEM, DispatchNotice(SYSTEM, first.run_id, first.task, first.attempt, "taken"), 205)
    assert released(r)[-1].run_id == "b0"
    take_and_finish(r, released(r)[-1], 210)
    for event in released(r)[1:8]:  # a's items are taken from `work` one by one
        r.handle(SYSTEM, DispatchNotice(SYSTEM, event.run_id, event.task, event.attempt, "taken"), 300)
    state = r.states[SYSTEM]
    assert sum(1 for item in state.released.values() if not item.taken) == 4  # b's share kept
    before = len(released(r))
    r.handle(SYSTEM, offer("b1", "b", window=8), 400)
    assert [e.run_id for e in released(r)][before:] == ["b1"]  # at once, behind 4 of a's
    take_and_finish(r, released(r)[-1], 410)
    quiet = 400 + ACTIVE_MS
    for event in [e for e in released(r) if e.tenant == "a"][7:11]:
        r.handle(SYSTEM, DispatchNotice(SYSTEM, event.run_id, event.task, event.attempt, "taken"), quiet)
    state = r.states[SYSTEM]
    assert sum(1 for item in state.released.values() if not item.taken) == 8  # b quiet: a has it all
