"""bench.chaos's cron part: a schedule firing every 2 s while the cron processor and
the orchestrator are killed with the rest. Its system has no agents (a run succeeds when
submitted), so it adds no work and touches no payment; what is checked is the slots:
each fired once, none missing between the first and the last (``allow`` with no deadline:
slots missed while the cron processor was down fire on recovery), each one run."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from taskplane.contract.cron import (
    ApplySchedules,
    PauseSchedule,
    ScheduleSpec,
    SlotFired,
    SlotsSkipped,
)
from taskplane.contract.messages import RunSubmitted, RunSucceeded
from taskplane.contract.plan import ExecutionPolicy, SystemPlan
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.serde import Serde

SYSTEM = "chaos-cron"
PLAN = SystemPlan(SYSTEM, "v1", (), ExecutionPolicy())
SCHEDULE = ScheduleSpec("every-2s", "*/2 * * * * *", "UTC", '{"from": "chaos"}', "allow")
PERIOD_MS = 2_000


def start_schedule(stack: Any) -> None:
    stack.publisher.to_cron(ApplySchedules(SYSTEM, "v1", PLAN, (SCHEDULE,)))
    stack.publisher.flush()


def stop_schedule(stack: Any) -> None:
    stack.publisher.to_cron(PauseSchedule(SYSTEM, SCHEDULE.name, "bench.chaos"))
    stack.publisher.flush()


def check_schedule(stack: Any, failures: list[str], wait_s: float = 120.0) -> dict[str, int]:
    """Figures of the schedule, after ``stop_schedule``; problems appended to ``failures``."""
    serde = Serde()
    fired: list[SlotFired] = []
    skipped = 0
    deadline = time.monotonic() + wait_s
    while True:  # until the pause is on the log: every slot before it is decided
        events = [serde.decode(v)[1] for _p, _k, v in read_to_end(stack.kafka, stack.topics.schedule_events) if v]
        fired = [e for e in events if isinstance(e, SlotFired)]
        skipped = sum(e.count for e in events if isinstance(e, SlotsSkipped))
        if any(type(e).__name__ == "SchedulePaused" for e in events) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    runs = {e.run_id for e in fired}
    with contextlib.suppress(TimeoutError):  # a scheduled run succeeds once the orchestrator takes its submit
        stack.log.wait_for(lambda log: runs <= {e.run_id for e in log.events(RunSucceeded)}, wait_s)
    slots = sorted(e.slot_ms for e in fired)
    expected = set(range(slots[0], slots[-1] + 1, PERIOD_MS)) if slots else set()
    submitted: dict[str, int] = {}
    for event in stack.log.events(RunSubmitted):
        if event.run_id in runs:
            submitted[event.run_id] = submitted.get(event.run_id, 0) + 1
    figures = {
        "slots_fired": len(slots),
        "slots_fired_twice": len(slots) - len(set(slots)),
        "slots_missing": len(expected - set(slots)),
        "slots_skipped": skipped,
        "runs_not_one": sum(1 for r in runs if submitted.get(r, 0) != 1),
        "runs_unfinished": len(runs - {e.run_id for e in stack.log.events(RunSucceeded)}),
        "fired_late": sum(1 for e in fired if e.fired_ms - e.slot_ms > PERIOD_MS),
    }
    if not slots:
        failures.append("cron: no slot fired")
    for name in ("slots_fired_twice", "slots_missing", "slots_skipped", "runs_not_one", "runs_unfinished"):
        if figures[name]:
            failures.append(f"cron: {name} = {figures[name]}")
    return figures
