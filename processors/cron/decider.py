"""The cron decider, keyed by system: which slot fires, which is skipped, and what a
fired slot does to the run the schedule started before (concurrencyPolicy).

Time is the log's (``at_ms``, ``CronTick.now_ms``). Which wall times are slots is the
calendar's answer, given by the wiring's hints and recorded in the events
(``SlotsDue``, ``SchedulesApplied``, ``ScheduleResumed``), so a replay fires the same
slots whatever tz database it runs with. Whether the previous run still runs is learnt
from the log too: ``ScheduledRunEnded``, which the orchestrator writes when a run a
schedule started ends.

A slot's run has the id ``keyed_run_id(system, cron/<schedule>/<slot>)``: fired twice
(the processor killed between fire and commit) it is still one run. Slots missed while
nothing ticked fire when they are within ``startingDeadline``; the rest are recorded as
skipped. Of several missed slots ``allow`` fires each, ``forbid`` and ``replace`` only
the latest (one run at a time). A paused schedule does not fire; resuming it starts from
the next slot after the resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, assert_never

from taskplane.contract.cron import (
    ApplySchedules,
    CronCommand,
    CronCommandRejected,
    CronEvent,
    CronState,
    CronTick,
    PauseSchedule,
    ResumeSchedule,
    ScheduledRunEnded,
    ScheduledRunFinished,
    SchedulePaused,
    ScheduleResumed,
    SchedulesApplied,
    ScheduleState,
    SlotFired,
    SlotsDue,
    SlotsSkipped,
    keyed_run_id,
    slot_key,
)
from taskplane.contract.decider import DecisionError, Output, PlainState
from taskplane.contract.messages import CancelRun, SubmitRun


class CronDecider(PlainState):
    """``Decider[CronState, CronCommand, CronEvent]`` with the calendar as its input:
    ``given`` is ``{schedule: next slot}`` for an apply, ``(next slot,)`` for a resume and
    the ``SlotsDue`` of each due schedule for a tick."""

    def decide(self, state: CronState | None, command: CronCommand, at_ms: int,
               given: Any = None) -> Sequence[CronEvent]:
        match command:
            case ApplySchedules():
                return [_applied(state, command, given or {})]
            case PauseSchedule(system=system, schedule=name, by=by):
                current = _schedule(state, name)
                return [] if current.paused else [SchedulePaused(system, name, by, at_ms)]
            case ResumeSchedule(system=system, schedule=name, by=by):
                if not _schedule(state, name).paused:
                    return []
                if given is None:
                    raise DecisionError("no calendar answer for the resume")
                return [ScheduleResumed(system, name, by, at_ms, given[0])]
            case ScheduledRunEnded(system=system, schedule=name, run_id=run_id, status=status):
                ended = state.schedule(name) if state is not None else None
                if ended is None or run_id not in ended.active:
                    return []  # already replaced, or a schedule since removed
                return [ScheduledRunFinished(system, name, run_id, status)]
            case CronTick(now_ms=now):
                return _tick(state, now, given or ())
            case _:
                assert_never(command)

    def recorded(self, command: CronCommand, events: Sequence[CronEvent]) -> Any:
        if isinstance(command, CronTick):
            return tuple(e for e in events if isinstance(e, SlotsDue))
        for event in events:
            if isinstance(event, SchedulesApplied):
                return {s.spec.name: s.next_slot_ms for s in event.schedules}
            if isinstance(event, ScheduleResumed):
                return (event.next_slot_ms,)
        return None

    def evolve(self, state: CronState | None, event: CronEvent) -> CronState | None:
        match event:
            case SchedulesApplied(system=system, version=version, plan=plan, schedules=schedules):
                return CronState(system, version, plan, schedules)
            case CronCommandRejected():
                return state
            case SlotsDue(schedule=name, next_slot_ms=next_slot):
                return _with(state, name, lambda s: replace(s, next_slot_ms=next_slot))
            case SlotFired(schedule=name, slot_ms=slot, run_id=run_id, fired_ms=fired, replaced=gone):
                return _with(state, name, lambda s: replace(
                    s, last_slot_ms=slot, last_run_id=run_id, last_fired_ms=fired, fired=s.fired + 1,
                    active=(*(r for r in s.active if r not in gone), run_id)))
            case SlotsSkipped(schedule=name, count=count):
                return _with(state, name, lambda s: replace(s, skipped=s.skipped + count))
            case SchedulePaused(schedule=name):
                return _with(state, name, lambda s: replace(s, paused=True))
            case ScheduleResumed(schedule=name, next_slot_ms=next_slot):
                return _with(state, name, lambda s: replace(s, paused=False, next_slot_ms=next_slot))
            case ScheduledRunFinished(schedule=name, run_id=run_id):
                return _with(state, name, lambda s: replace(s, active=tuple(r for r in s.active if r != run_id)))
            case _:
                assert_never(event)

    def next_deadline(self, state: CronState | None) -> int | None:
        if state is None:
            return None
        due = [s.next_slot_ms for s in state.schedules if not s.paused and s.next_slot_ms is not None]
        return min(due, default=None)

    def tick(self, now_ms: int) -> CronCommand:
        return CronTick(now_ms)

    def outputs(self, state: CronState | None, event: CronEvent) -> Iterable[Output]:
        if state is None or not isinstance(event, SlotFired):
            return []
        schedule = state.schedule(event.schedule)
        assert schedule is not None
        cancels = [Output("commands", run_id, CancelRun(run_id, f"replaced by schedule {event.schedule}'s "
                                                                f"slot {event.slot_ms}"))
                   for run_id in event.replaced]
        submit = SubmitRun(event.run_id, state.plan, schedule.spec.input, event.idempotency_key)
        return [*cancels, Output("commands", event.run_id, submit)]

    def rejection(self, command: CronCommand, reason: str) -> CronEvent:
        return CronCommandRejected(getattr(command, "system", ""), reason)


def _schedule(state: CronState | None, name: str) -> ScheduleState:
    found = state.schedule(name) if state is not None else None
    if found is None:
        raise DecisionError(f"unknown schedule {name!r}")
    return found


def _with(state: CronState | None, name: str, change: Any) -> CronState | None:
    if state is None:
        return None
    return replace(state, schedules=tuple(change(s) if s.spec.name == name else s for s in state.schedules))


def _applied(state: CronState | None, command: ApplySchedules, next_slots: dict[str, int | None]) -> SchedulesApplied:
    """Each schedule as it stands after the apply: one whose expression and zone are
    unchanged keeps its place (next slot, pause, runs); a new or changed one starts at
    the calendar's next slot after the apply. Schedules left out of the manifest go."""
    schedules = []
    for spec in command.schedules:
        before = state.schedule(spec.name) if state is not None else None
        if before is not None and (before.spec.cron, before.spec.time_zone) == (spec.cron, spec.time_zone):
            schedules.append(replace(before, spec=spec))
        elif spec.name not in next_slots:
            raise DecisionError(f"no calendar answer for schedule {spec.name!r}")
        else:
            kept = before or ScheduleState(spec, None)
            schedules.append(replace(kept, spec=spec, next_slot_ms=next_slots[spec.name]))
    return SchedulesApplied(command.system, command.version, command.plan, tuple(schedules))


def _tick(state: CronState | None, now: int, answers: Sequence[SlotsDue]) -> list[CronEvent]:
    if state is None:
        return []
    by_name = {a.schedule: a for a in answers}
    events: list[CronEvent] = []
    for schedule in state.schedules:
        if schedule.paused or schedule.next_slot_ms is None or schedule.next_slot_ms > now:
            continue
        due = by_name.get(schedule.spec.name)
        if due is None:
            raise DecisionError(f"no calendar answer for schedule {schedule.spec.name!r}")
        events.append(due)
        events.extend(_slots(state, schedule, due, now))
    return events


def _slots(state: CronState, schedule: ScheduleState, due: SlotsDue, now: int) -> list[CronEvent]:
    spec, system, name = schedule.spec, state.system, schedule.spec.name
    events: list[CronEvent] = []
    if due.dropped:
        events.append(SlotsSkipped(system, name, due.dropped, "too many missed slots"))
    deadline = spec.starting_deadline_ms
    late = [s for s in due.slots if deadline is not None and now - s > deadline]
    timely = [s for s in due.slots if s not in late]
    if late:
        events.append(SlotsSkipped(system, name, len(late), "past startingDeadline", late[0], late[-1]))
    if spec.concurrency_policy != "allow" and len(timely) > 1:
        older = timely[:-1]
        events.append(SlotsSkipped(system, name, len(older), "superseded by a later slot", older[0], older[-1]))
        timely = timely[-1:]
    active = schedule.active
    for slot in timely:
        if spec.concurrency_policy == "forbid" and active:
            events.append(SlotsSkipped(system, name, 1, f"previous run {active[-1]} still running", slot, slot))
            continue
        replaced = active if spec.concurrency_policy == "replace" else ()
        key = slot_key(name, slot)
        run_id = keyed_run_id(system, key)
        events.append(SlotFired(system, name, slot, run_id, key, now, replaced))
        active = (*(r for r in active if r not in replaced), run_id)
    return events
