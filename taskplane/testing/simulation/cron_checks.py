"""The cron invariants (docs/scheduling.md, "Cron schedules"), checked on the simulated
logs, the cron processor's and the orchestrator's, against the calendar:

- a cron slot is one run: every run a slot fired has the slot's key and run id, and the
  orchestrator submitted it once (a slot fired again after a crash or a lost commit
  reaches it under the same key and is refused);
- a due cron slot fires once: every slot of the calendar from the apply (or a resume) to
  the pause (10 s before it, and only the ticked ones while the processor was down since
  the slot), fired, or was
  skipped for a reason that holds (later than ``startingDeadline`` when decided, older
  than the latest due one under ``forbid``/``replace``, or the previous run had not
  ended as far as the cron log says under ``forbid``), never both;
- no run for a paused schedule's slots: nothing fired while paused, and no slot in a
  pause's gap;
- ``forbid`` runs one at a time: on the orchestrator's log no run of a ``forbid``
  schedule is submitted before the previous one ended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from taskplane.contract import messages as m
from taskplane.contract.cron import (
    ScheduledRunFinished,
    SchedulePaused,
    ScheduleResumed,
    SchedulesApplied,
    ScheduleSpec,
    SlotFired,
    SlotsDue,
    SlotsSkipped,
    keyed_run_id,
    schedule_of,
    slot_key,
)
from taskplane.processors.cron.app import next_slot
from taskplane.testing.simulation.result import SimulationResult, Violation

ONE_RUN = "a cron slot is one run"
DUE = "a due cron slot fires once"
PAUSED = "no run for a paused schedule's slots"
FORBID = "forbid runs one at a time"
_PREVIOUS = re.compile(r"previous run (\S+) still running")
_ENDS = (m.RunSucceeded, m.RunFailed, m.RunCancelled)
# A slot due this long before a pause was decided by then, unless the processor was down
# meanwhile: a tick every 200 ms, after an aborted transaction (1 s) a grace of 3 s.
OWED_LAG_MS = 10_000


@dataclass
class _Schedule:
    spec: ScheduleSpec
    spans: list[list[int | None]] = field(default_factory=list)  # [first slot, paused at | None]
    looked: list[int] = field(default_factory=list)  # when a tick found slots due
    fired: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # slot -> (at, run id)
    skipped: dict[int, list[tuple[int, str, int]]] = field(default_factory=dict)  # slot -> (at, reason, position)
    finished: dict[str, int] = field(default_factory=dict)  # run id -> where on the cron log it learnt it ended
    paused_fires: list[SlotFired] = field(default_factory=list)


def check_cron(result: SimulationResult) -> list[Violation]:
    if not result.cron_events:
        return []
    schedules = _fold(result)
    # By position on the orchestrator's log: log times are the senders' clocks (skewed).
    submitted: dict[str, list[tuple[int, str | None]]] = {}
    ended: dict[str, int] = {}
    for position, record in enumerate(result.events):
        event = record.event
        if isinstance(event, m.RunSubmitted):
            submitted.setdefault(event.run_id, []).append((position, event.idempotency_key))
        elif isinstance(event, _ENDS):
            ended.setdefault(record.run_id, position)
    found: list[Violation] = []
    for (system, name), schedule in schedules.items():
        found += _one_run(system, name, schedule, submitted)
        found += _due(name, schedule, result.cron_down, result.ended_ms)
        found += _paused(name, schedule)
        if schedule.spec.concurrency_policy == "forbid":
            found += _forbid(name, submitted, ended)
    return found


def _fold(result: SimulationResult) -> dict[tuple[str, str], _Schedule]:
    schedules: dict[tuple[str, str], _Schedule] = {}
    for position, record in enumerate(result.cron_events):
        event: Any = record.event
        if isinstance(event, SchedulesApplied):
            for state in event.schedules:
                known = schedules.get((event.system, state.spec.name))
                if known is None:  # a changed expression starts again: not simulated
                    schedules[(event.system, state.spec.name)] = _Schedule(state.spec, [[state.next_slot_ms, None]])
            continue
        schedule = schedules.get((getattr(event, "system", ""), getattr(event, "schedule", "")))
        if schedule is None:
            continue
        span = schedule.spans[-1]
        match event:
            case SlotsDue():
                schedule.looked.append(record.at_ms)
            case SlotFired(slot_ms=slot, run_id=run_id):
                schedule.fired.setdefault(slot, []).append((record.at_ms, run_id))
                if span[1] is not None:
                    schedule.paused_fires.append(event)
            case SlotsSkipped(first_slot_ms=first, last_slot_ms=last, reason=reason) if first is not None:
                for slot in _calendar(schedule.spec, first, last if last is not None else first):
                    schedule.skipped.setdefault(slot, []).append((record.at_ms, reason, position))
            case SchedulePaused() if span[1] is None:
                span[1] = record.at_ms
            case ScheduleResumed(next_slot_ms=first) if span[1] is not None:
                schedule.spans.append([first, None])
            case ScheduledRunFinished(run_id=run_id):
                schedule.finished.setdefault(run_id, position)
            case _:
                pass
    return schedules


def _calendar(spec: ScheduleSpec, first: int, last: int) -> list[int]:
    """The schedule's slots in ``[first, last]``, asked of the calendar."""
    slots: list[int] = []
    at = next_slot(spec, first - 1)
    while at is not None and at <= last and len(slots) < 10_000:
        slots.append(at)
        at = next_slot(spec, at)
    return slots


def _one_run(system: str, name: str, schedule: _Schedule,
             submitted: dict[str, list[tuple[int, str | None]]]) -> list[Violation]:
    found = []
    for slot, fires in schedule.fired.items():
        key = slot_key(name, slot)
        expected = keyed_run_id(system, key)
        runs = {run_id for _, run_id in fires}
        if runs != {expected}:
            found.append(Violation(ONE_RUN, f"{name} slot {slot} fired as run(s) {sorted(runs)}, not its key's "
                                   f"{expected}", tuple(sorted(runs))))
        for run_id in runs:
            times = submitted.get(run_id, [])
            if len(times) != 1 or times[0][1] != key:
                found.append(Violation(ONE_RUN, f"{name} slot {slot}: run {run_id} submitted {len(times)} times "
                                       f"(keys {sorted({str(k) for _, k in times})}, expected {key})", (run_id,)))
    keys: dict[str, set[str]] = {}
    for run_id, times in submitted.items():
        for _, submitted_key in times:
            if submitted_key is not None and schedule_of(submitted_key) == name:
                keys.setdefault(submitted_key, set()).add(run_id)
    for key, runs in keys.items():
        if len(runs) > 1:
            found.append(Violation(ONE_RUN, f"{key}: {len(runs)} runs", tuple(sorted(runs))))
    return found


def _due(name: str, schedule: _Schedule, down: list[tuple[int, int]], ended: int) -> list[Violation]:
    found = []
    spec = schedule.spec
    for first, paused in schedule.spans:
        if first is None:
            continue
        until = paused if paused is not None else ended
        looked = max((t for t in schedule.looked if t >= first and t <= until), default=first - 1)
        # Owed: what a tick decided, and what the processor, up and ticking, had time to
        # decide before the pause (one it met at its restart, before its first tick, is not).
        owed = [s for s in _calendar(spec, first, max(looked, until - OWED_LAG_MS))
                if s <= looked or not any(died < until and back + OWED_LAG_MS > s for died, back in down)]
        for slot in owed:
            fired, skipped = schedule.fired.get(slot, []), schedule.skipped.get(slot, [])
            if fired and skipped:
                found.append(Violation(DUE, f"{name} slot {slot} both fired and skipped ({skipped[0][1]})"))
            elif not fired and not skipped:
                found.append(Violation(DUE, f"{name} slot {slot} was due before {until} and neither fired nor "
                                       "skipped"))
            for at, reason, position in skipped:
                problem = _skip_problem(spec, schedule, slot, at, reason, position)
                if problem:
                    found.append(Violation(DUE, f"{name} slot {slot} skipped at {at} ({reason}): {problem}"))
    return found


def _skip_problem(spec: ScheduleSpec, schedule: _Schedule, slot: int, at: int, reason: str,
                  position: int) -> str | None:
    if reason == "past startingDeadline":
        deadline = spec.starting_deadline_ms
        if deadline is None or at - slot <= deadline:
            return f"only {at - slot} ms late (startingDeadline {deadline})"
        return None
    if reason == "superseded by a later slot":
        return "concurrencyPolicy allow fires every slot" if spec.concurrency_policy == "allow" else None
    previous = _PREVIOUS.fullmatch(reason)
    if previous is not None and spec.concurrency_policy == "forbid":
        run_id = previous.group(1)
        if not any(r == run_id for fires in schedule.fired.values() for _, r in fires):
            return f"{run_id} is no run of this schedule"
        # By log order, not log time: the end's time is the worker's clock (skewed).
        learnt = schedule.finished.get(run_id)
        if learnt is not None and learnt < position:
            return f"the cron log had already recorded {run_id} ended"
        return None
    return "not a reason to skip a slot"


def _paused(name: str, schedule: _Schedule) -> list[Violation]:
    found = [Violation(PAUSED, f"{name} slot {e.slot_ms} fired while the schedule was paused", (e.run_id,))
             for e in schedule.paused_fires]
    gaps = [(paused, after[0]) for (_, paused), after in zip(schedule.spans, schedule.spans[1:], strict=False)]
    for slot, fires in schedule.fired.items():
        for paused, resumed in gaps:
            if paused is not None and paused < slot and (resumed is None or slot < resumed):
                found.append(Violation(PAUSED, f"{name} slot {slot} fired: paused at {paused}, resumed from "
                                       f"{resumed}", tuple(r for _, r in fires)))
    return found


def _forbid(name: str, submitted: dict[str, list[tuple[int, str | None]]], ended: dict[str, int]) -> list[Violation]:
    runs = sorted((times[0][0], run_id) for run_id, times in submitted.items()
                  if times and schedule_of(times[0][1]) == name)
    found = []
    for (start, run_id), (later, next_id) in zip(runs, runs[1:], strict=False):
        end = ended.get(run_id)
        if end is None or later < end:
            found.append(Violation(FORBID, f"{name}: run {next_id} submitted (event #{later}) while {run_id} "
                                   f"(#{start}) ran until {f'#{end}' if end is not None else 'the end'}",
                                   (run_id, next_id)))
    return found
