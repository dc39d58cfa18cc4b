"""Wiring: the cron decider on the transactional runtime (partitioned by system), and
its hints: the calendar's answers (``calendar.py``), which the decider records.

Started by ``taskplane processor run cron`` (``taskplane/processes.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, get_args

from taskplane.contract.cron import (
    ApplySchedules,
    CronCommand,
    CronEvent,
    CronState,
    CronTick,
    ResumeSchedule,
    ScheduleSpec,
    SlotsDue,
)
from taskplane.contract.decider import Output
from taskplane.processors.cron.calendar import (
    CronError,
    CronExpr,
    due_slots,
    next_after,
    parse_cron,
    zone,
)
from taskplane.processors.cron.decider import CronDecider
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics, catalog_spec

CRON = ProcessorSpec("cron", "schedules", "schedule-events", "cron-changelog", catalog_spec("cron-changelog"),
                     inputs=get_args(CronCommand))
# At most this many missed slots of one schedule fire (or are weighed against the
# starting deadline) on recovery; older ones are recorded as skipped, uncounted one by one.
MAX_DUE = 500


@lru_cache(maxsize=256)
def _calendar(cron: str, time_zone: str) -> tuple[CronExpr, Any]:
    return parse_cron(cron), zone(time_zone)


def next_slot(spec: ScheduleSpec, after_ms: int) -> int | None:
    """The schedule's first slot after ``after_ms``; None when it fires no more (or its
    expression no longer parses, which the manifest's validation refused)."""
    try:
        expr, tz = _calendar(spec.cron, spec.time_zone)
    except CronError:
        return None
    return next_after(expr, tz, after_ms)


class CronHints:
    """``Hints[CronState, CronCommand, CronEvent]``: asks the calendar what a decision
    needs. Holds nothing between batches."""

    def given(self, state: CronState | None, command: CronCommand, at_ms: int) -> Any:
        if isinstance(command, ApplySchedules):
            return {spec.name: next_slot(spec, at_ms) for spec in command.schedules}
        if state is None:
            return None
        if isinstance(command, ResumeSchedule):
            schedule = state.schedule(command.schedule)
            return None if schedule is None else (next_slot(schedule.spec, at_ms),)
        if isinstance(command, CronTick):
            return tuple(self._due(state, command.now_ms))
        return None

    def _due(self, state: CronState, now: int) -> Iterable[SlotsDue]:
        for schedule in state.schedules:
            first = schedule.next_slot_ms
            if schedule.paused or first is None or first > now:
                continue
            try:
                expr, tz = _calendar(schedule.spec.cron, schedule.spec.time_zone)
            except CronError:
                yield SlotsDue(state.system, schedule.spec.name, (), None)
                continue
            slots, dropped, after = due_slots(expr, tz, first, now, MAX_DUE)
            yield SlotsDue(state.system, schedule.spec.name, slots, after, dropped)

    def decided(self, state: CronState | None, command: CronCommand, events: Sequence[CronEvent],
                at_ms: int) -> Iterable[Output]:
        return ()

    def commit(self) -> None:
        pass

    def roll_back(self) -> None:
        pass


def cron_runtime(
    kafka_config: dict[str, Any],
    topics: Topics,
    settings: RuntimeSettings | None = None,
    observer: RuntimeObserver | None = None,
) -> ProcessorRuntime[Any, Any, Any]:
    return ProcessorRuntime(CronDecider(), CRON.under(topics), kafka_config, topics, settings,
                            observer=observer, hints=CronHints)
