"""The cron decider over the log's time, with the calendar as its recorded input: slots
fire once, missed slots within the starting deadline fire on recovery, the others are
recorded as skipped; forbid / allow / replace; pause and resume; DST."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.contract.cron import (
    ApplySchedules,
    CronState,
    CronTick,
    PauseSchedule,
    ResumeSchedule,
    ScheduledRunEnded,
    ScheduledRunFinished,
    ScheduleSpec,
    ScheduleState,
    SlotFired,
    SlotsSkipped,
    keyed_run_id,
    schedule_of,
    slot_key,
)
from taskplane.contract.decider import Output, step
from taskplane.contract.messages import CancelRun, SubmitRun
from taskplane.processors.cron.app import CronHints
from taskplane.processors.cron.decider import CronDecider
from taskplane.streams.publisher import run_id_for
from tests.processors._decider_helpers import document_pipeline

SYSTEM = "document-pipeline"
MINUTE = 60_000
PLAN = document_pipeline()
T0 = int(datetime(2026, 12, 7, 10, 0, 30, tzinfo=UTC).timestamp() * 1000)  # 30 s past a minute


def ms(year: int, month: int, day: int, hour: int, minute: int, zone: str = "UTC") -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def spec(name: str = "nightly", cron: str = "* * * * *", policy: str = "allow", deadline: int | None = None,
         zone: str = "UTC") -> ScheduleSpec:
    return ScheduleSpec(name, cron, zone, '{"n": 1}', policy, deadline)


@dataclass
class Driver:
    """The decider with the calendar's hints, one system, every decision kept (what
    ``InMemoryRunner`` does, plus the commands, for the replay test)."""

    state: CronState | None = None
    decisions: list[tuple[Any, int, list[Any]]] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    decider: CronDecider = field(default_factory=CronDecider)

    def handle(self, command: Any, at: int) -> list[object]:
        result = step(self.decider, self.state, command, at, CronHints())
        assert result.failure is None, result.failure
        if result.events:
            self.decisions.append((command, at, list(result.events)))
        self.state, self.outputs = result.state, [*self.outputs, *result.outputs]
        return list(result.events)

    def advance(self, now: int) -> list[object]:
        due = self.decider.next_deadline(self.state)
        return self.handle(CronTick(now), now) if due is not None and due <= now else []

    @property
    def log(self) -> list[object]:
        return [e for _, _, events in self.decisions for e in events]

    @property
    def schedules(self) -> tuple[ScheduleState, ...]:
        assert self.state is not None
        return self.state.schedules


def runner(*specs: ScheduleSpec, at: int = T0) -> Driver:
    r = Driver()
    r.handle(ApplySchedules(SYSTEM, "v1", PLAN, specs or (spec(),)), at)
    return r


def fired(r: Driver) -> list[int]:
    return [e.slot_ms for e in r.log if isinstance(e, SlotFired)]


def skipped(r: Driver) -> list[SlotsSkipped]:
    return [e for e in r.log if isinstance(e, SlotsSkipped)]


def test_a_slot_fires_when_the_log_time_reaches_it_and_not_before() -> None:
    r = runner()
    first = T0 + 30_000  # the next whole minute
    assert r.decider.next_deadline(r.state) == first
    assert r.advance(first - 1) == []
    r.advance(first)
    assert fired(r) == [first]
    submit = r.outputs[-1]
    assert submit.topic == "commands" and isinstance(submit.value, SubmitRun)
    assert submit.value.idempotency_key == slot_key("nightly", first) and submit.value.input == '{"n": 1}'
    assert submit.value.run_id == run_id_for(SYSTEM, slot_key("nightly", first))  # a keyed submit's id
    assert r.decider.next_deadline(r.state) == first + MINUTE
    r.advance(first + 10)  # the same slot is not fired again
    assert fired(r) == [first]


def test_the_run_id_is_the_keyed_submits_and_the_key_names_the_schedule() -> None:
    for key in ("cron/a/1", "cron/x.y/1765100000000", "x"):
        assert keyed_run_id("s", key) == run_id_for("s", key)
    assert schedule_of(slot_key("nightly", 5)) == "nightly"
    assert schedule_of("user-key") is None and schedule_of(None) is None and schedule_of("cron/x") is None


def test_missed_slots_inside_the_deadline_fire_and_older_ones_are_skipped() -> None:
    r = runner(spec(deadline=3 * MINUTE))
    first = T0 + 30_000
    now = first + 10 * MINUTE  # nothing ticked for ten minutes
    r.advance(now)
    assert fired(r) == [first + 7 * MINUTE, first + 8 * MINUTE, first + 9 * MINUTE, first + 10 * MINUTE]
    (late,) = skipped(r)
    assert (late.count, late.reason, late.first_slot_ms, late.last_slot_ms) == (
        7, "past startingDeadline", first, first + 6 * MINUTE)
    assert r.schedules[0].skipped == 7


def test_without_a_deadline_every_missed_slot_fires() -> None:
    r = runner()
    r.advance(T0 + 30_000 + 4 * MINUTE)
    assert len(fired(r)) == 5 and not skipped(r)


def test_forbid_skips_a_slot_while_the_previous_run_runs_and_fires_after_it_ended() -> None:
    r = runner(spec(policy="forbid"))
    first = T0 + 30_000
    r.advance(first)
    run_id = r.schedules[0].last_run_id
    assert run_id is not None
    r.advance(first + MINUTE)
    assert fired(r) == [first]
    assert skipped(r)[-1].reason == f"previous run {run_id} still running"
    assert r.handle(ScheduledRunEnded(SYSTEM, "nightly", run_id, "succeeded"), first + MINUTE + 5) == [
        ScheduledRunFinished(SYSTEM, "nightly", run_id, "succeeded")]
    r.advance(first + 2 * MINUTE)
    assert fired(r) == [first, first + 2 * MINUTE]


def test_forbid_after_an_outage_fires_only_the_latest_slot() -> None:
    r = runner(spec(policy="forbid"))
    first = T0 + 30_000
    r.advance(first + 3 * MINUTE)
    assert fired(r) == [first + 3 * MINUTE]
    assert [(s.count, s.reason) for s in skipped(r)] == [(3, "superseded by a later slot")]


def test_allow_runs_slots_side_by_side() -> None:
    r = runner(spec(policy="allow"))
    first = T0 + 30_000
    r.advance(first)
    r.advance(first + MINUTE)
    assert fired(r) == [first, first + MINUTE]
    assert len(r.schedules[0].active) == 2


def test_replace_cancels_the_running_run_and_starts_the_new_one() -> None:
    r = runner(spec(policy="replace"))
    first = T0 + 30_000
    r.advance(first)
    old = r.schedules[0].last_run_id
    r.advance(first + MINUTE)
    last = [e for e in r.log if isinstance(e, SlotFired)][-1]
    assert last.replaced == (old,)
    cancel, submit = r.outputs[-2:]
    assert cancel.value == CancelRun(old or "", f"replaced by schedule nightly's slot {first + MINUTE}")
    assert isinstance(submit.value, SubmitRun) and submit.key == last.run_id
    assert r.schedules[0].active == (last.run_id,)
    # the cancelled run's end arrives later: nothing to do
    assert r.handle(ScheduledRunEnded(SYSTEM, "nightly", old or "", "cancelled"), first + MINUTE + 9) == []


def test_pause_stops_firing_and_resume_starts_at_the_next_slot_after_it() -> None:
    r = runner()
    first = T0 + 30_000
    r.handle(PauseSchedule(SYSTEM, "nightly", "ops"), T0 + 1)
    assert r.decider.next_deadline(r.state) is None
    assert r.handle(PauseSchedule(SYSTEM, "nightly", "ops"), T0 + 2) == []  # already paused
    r.advance(first + 5 * MINUTE)
    assert fired(r) == []
    r.handle(ResumeSchedule(SYSTEM, "nightly", "ops"), first + 5 * MINUTE + 1)
    r.advance(first + 6 * MINUTE)
    assert fired(r) == [first + 6 * MINUTE]  # the slots while paused never fire


def test_pausing_an_unknown_schedule_is_a_rejection_not_a_crash() -> None:
    r = runner()
    (event,) = r.handle(PauseSchedule(SYSTEM, "weekly"), T0)
    assert "unknown schedule 'weekly'" in event.reason  # type: ignore[attr-defined]


def test_reapplying_an_unchanged_schedule_keeps_its_place_and_a_changed_one_restarts() -> None:
    r = runner(spec(), spec("hourly", "0 * * * *"))
    first = T0 + 30_000
    r.advance(first)
    r.handle(ApplySchedules(SYSTEM, "v2", PLAN, (spec(), spec("hourly", "30 * * * *"))), first + 1)
    nightly, hourly = r.schedules
    assert (nightly.fired, nightly.next_slot_ms) == (1, first + MINUTE)
    assert hourly.next_slot_ms == ms(2026, 12, 7, 10, 30)
    r.handle(ApplySchedules(SYSTEM, "v3", PLAN, ()), first + 2)  # schedules removed
    assert r.decider.next_deadline(r.state) is None


def test_slots_follow_the_zone_across_spring_forward_and_fall_back() -> None:
    paris = "Europe/Paris"
    r = runner(spec("early", "30 2 * * *", zone=paris), at=ms(2026, 3, 27, 12, 0))
    r.advance(ms(2026, 3, 31, 12, 0))
    # 29 March has no 02:30 in Paris (02:00 -> 03:00): it does not fire that day
    assert fired(r) == [ms(2026, 3, 28, 2, 30, paris), ms(2026, 3, 30, 2, 30, paris), ms(2026, 3, 31, 2, 30, paris)]
    assert fired(r)[1] - fired(r)[0] == 2 * 24 * 3_600_000 - 3_600_000
    r = runner(spec("early", "30 2 * * *", zone=paris), at=ms(2026, 10, 24, 12, 0))
    r.advance(ms(2026, 10, 26, 12, 0))
    # 25 October repeats 02:00-03:00: 02:30 fires once, at its first occurrence (CEST, UTC+2)
    assert fired(r) == [ms(2026, 10, 25, 0, 30), ms(2026, 10, 26, 2, 30, paris)]


def test_a_replay_with_the_recorded_answers_decides_the_same() -> None:
    r = runner(spec(policy="forbid", deadline=2 * MINUTE), spec("b", "*/2 * * * *"))
    r.advance(T0 + 7 * MINUTE)
    r.handle(PauseSchedule(SYSTEM, "b"), T0 + 7 * MINUTE + 1)
    r.handle(ResumeSchedule(SYSTEM, "b"), T0 + 9 * MINUTE)
    r.advance(T0 + 12 * MINUTE)
    assert len(fired(r)) > 3
    # re-decide each command with what its events recorded, and no calendar
    decider, state = CronDecider(), None
    for command, at, events in r.decisions:
        result = step(decider, state, command, at, _Given(decider.recorded(command, events)))
        assert result.events == events
        state = result.state
    assert state == r.state


class _Given:
    """Hints that hand over a recorded input."""

    def __init__(self, value: object) -> None:
        self.value = value

    def given(self, *_: object) -> object:
        return self.value

    def decided(self, *_: object) -> tuple[()]:
        return ()

    def commit(self) -> None: ...

    def roll_back(self) -> None: ...


# ---------------------------------------------------------------- property

ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 5 * MINUTE)),
    st.tuples(st.just("killed"), st.integers(0, 5 * MINUTE)),  # a tick whose transaction never committed
    st.tuples(st.just("restart"), st.just(0)),  # restored from the changelog
    st.tuples(st.just("end"), st.just(0)),  # the oldest active run ended
), max_size=40)


@settings(max_examples=200, deadline=None)
@given(actions=ACTIONS, policy=st.sampled_from(["forbid", "allow", "replace"]),
       deadline=st.one_of(st.none(), st.integers(1_000, 10 * MINUTE)))
def test_each_slot_fires_at_most_once_whatever_the_ticks_and_restarts(
        actions: list[tuple[str, int]], policy: str, deadline: int | None) -> None:
    r = runner(spec(policy=policy, deadline=deadline))
    now = T0
    every_submit: list[SubmitRun] = []  # committed or not: what the orchestrator might ever see
    for action, step_ms in actions:
        if action in ("tick", "killed"):
            now += step_ms
            before = (r.state, r.outputs, list(r.decisions))
            r.advance(now)
            every_submit.extend(o.value for o in r.outputs[len(before[1]):] if isinstance(o.value, SubmitRun))
            if action == "killed":  # nothing of the batch is visible: state and outputs as before
                r.state, r.outputs, r.decisions = before
        elif action == "restart":
            r.state = r.decider.restored(r.decider.snapshot(r.state))
        elif r.schedules[0].active:
            r.handle(ScheduledRunEnded(SYSTEM, "nightly", r.schedules[0].active[0], "succeeded"), now)
    committed = [o.value.idempotency_key for o in r.outputs if isinstance(o.value, SubmitRun)]
    assert len(committed) == len(set(committed)) == r.schedules[0].fired  # each slot fired once at most
    run_of: dict[str | None, str] = {}
    for submit in every_submit:  # a slot decided twice (a killed batch) is still one run
        assert run_of.setdefault(submit.idempotency_key, submit.run_id) == submit.run_id
    if policy != "allow":
        assert len(r.schedules[0].active) <= 1
