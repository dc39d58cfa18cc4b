"""Schedules as the CLI and the console see them: read from the cron processor's
changelog (its latest state per system), and changed by commands to it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from taskplane.contract.cron import CronState, PauseSchedule, ResumeSchedule, ScheduleState
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.publisher import Publisher
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics


@dataclass(frozen=True, slots=True)
class ScheduleView:
    system: str
    name: str
    cron: str
    time_zone: str
    concurrency_policy: str
    paused: bool
    next_slot_ms: int | None
    last_slot_ms: int | None
    last_fired_ms: int | None
    last_run_id: str | None
    running: int
    fired: int
    skipped: int

    @classmethod
    def of(cls, system: str, s: ScheduleState) -> ScheduleView:
        spec = s.spec
        return cls(system, spec.name, spec.cron, spec.time_zone, spec.concurrency_policy, s.paused,
                   None if s.paused else s.next_slot_ms, s.last_slot_ms, s.last_fired_ms, s.last_run_id,
                   len(s.active), s.fired, s.skipped)


def read_schedules(kafka_config: dict[str, Any], topics: Topics, system: str | None = None) -> list[ScheduleView]:
    """Every schedule (of ``system``) as the cron processor last committed it."""
    serde = Serde()
    latest: dict[str, CronState | None] = {}
    for _partition, key, value in read_to_end(kafka_config, topics.name("cron-changelog"),
                                              group_id="taskplane-schedules"):
        latest[key] = None if value is None else _state(serde.decode(value)[1])
    return list(_views(s for s in latest.values() if s is not None and (system is None or s.system == system)))


def applied_systems(kafka_config: dict[str, Any], topics: Topics) -> list[str]:
    """The names of the systems applied (``systems``; its ``name@version`` keys pin versions)."""
    latest: dict[str, bool] = {}
    for _partition, key, value in read_to_end(kafka_config, topics.systems, group_id="taskplane-schedules"):
        if "@" not in key:
            latest[key] = value is not None
    return sorted(name for name, present in latest.items() if present)


def set_paused(kafka_config: dict[str, Any], topics: Topics, system: str, schedule: str, paused: bool,
               by: str = "") -> None:
    """Ask the cron processor to pause (or resume) a schedule; recorded on ``schedules``."""
    command = PauseSchedule(system, schedule, by) if paused else ResumeSchedule(system, schedule, by)
    with Publisher(kafka_config, topics) as publisher:
        publisher.to_cron(command)


def _state(value: object) -> CronState | None:
    return value if isinstance(value, CronState) else None


def _views(states: Iterable[CronState]) -> Iterable[ScheduleView]:
    for state in sorted(states, key=lambda s: s.system):
        for schedule in state.schedules:
            yield ScheduleView.of(state.system, schedule)
