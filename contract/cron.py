"""Cron processor messages (partitioned by system; docs/scheduling.md, "Cron schedules").

Inputs on ``schedules``: ``ApplySchedules`` (``taskplane apply``), ``PauseSchedule`` /
``ResumeSchedule`` (``taskplane schedules``), ``ScheduledRunEnded`` (the orchestrator,
when a run a schedule started ends) and ``CronTick``. Events go to ``schedule-events``;
each fired slot is a ``SubmitRun`` on ``commands`` whose idempotency key is
``cron/<schedule>/<slot ms>`` and whose run id derives from (system, key) as a keyed
client submit's does, so a slot fired twice is one run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from taskplane.contract.plan import SystemPlan

KEY_PREFIX = "cron/"
POLICIES = ("forbid", "allow", "replace")
# The namespace of keyed run ids (streams/publisher.run_id_for), as bytes: uuid5 is
# computed here with hashlib because the contract imports no uuid (it draws uuid4).
_RUN_NAMESPACE = bytes.fromhex("5b0c7e4e5f4b4d3e9b7a7a9d1c2f0e11")


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    name: str
    cron: str
    time_zone: str = "UTC"
    input: str = "null"  # JSON text, the run's input
    concurrency_policy: str = "allow"  # forbid | allow | replace
    starting_deadline_ms: int | None = None  # None: a missed slot fires however late


@dataclass(frozen=True, slots=True)
class ScheduleState:
    spec: ScheduleSpec
    next_slot_ms: int | None  # None: the expression fires no more
    paused: bool = False
    last_slot_ms: int | None = None  # the last slot fired
    last_run_id: str | None = None
    last_fired_ms: int | None = None  # log time it was fired at
    active: tuple[str, ...] = ()  # runs it started that have not ended
    fired: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class CronState:
    system: str
    version: str
    plan: SystemPlan
    schedules: tuple[ScheduleState, ...] = ()

    def schedule(self, name: str) -> ScheduleState | None:
        return next((s for s in self.schedules if s.spec.name == name), None)


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class ApplySchedules:
    system: str
    version: str
    plan: SystemPlan
    schedules: tuple[ScheduleSpec, ...]


@dataclass(frozen=True, slots=True)
class PauseSchedule:
    system: str
    schedule: str
    by: str = ""


@dataclass(frozen=True, slots=True)
class ResumeSchedule:
    system: str
    schedule: str
    by: str = ""


@dataclass(frozen=True, slots=True)
class ScheduledRunEnded:
    system: str
    schedule: str
    run_id: str
    status: str


@dataclass(frozen=True, slots=True)
class CronTick:
    now_ms: int


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class SchedulesApplied:
    """The schedules as they stand after an apply; a new or changed schedule's
    ``next_slot_ms`` is the calendar's answer at the apply (a recorded input)."""

    system: str
    version: str
    plan: SystemPlan
    schedules: tuple[ScheduleState, ...]


@dataclass(frozen=True, slots=True)
class SlotsDue:
    """The calendar's answer to a Tick (a recorded input): the slots due since the
    schedule's next slot (the latest ones; ``dropped`` older ones left out) and the next
    slot after them."""

    system: str
    schedule: str
    slots: tuple[int, ...]
    next_slot_ms: int | None
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class SlotFired:
    system: str
    schedule: str
    slot_ms: int
    run_id: str
    idempotency_key: str
    fired_ms: int
    replaced: tuple[str, ...] = ()  # runs cancelled for it (concurrencyPolicy: replace)


@dataclass(frozen=True, slots=True)
class SlotsSkipped:
    system: str
    schedule: str
    count: int
    reason: str
    first_slot_ms: int | None = None
    last_slot_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SchedulePaused:
    system: str
    schedule: str
    by: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class ScheduleResumed:
    system: str
    schedule: str
    by: str
    at_ms: int
    next_slot_ms: int | None  # the calendar's answer at the resume (a recorded input)


@dataclass(frozen=True, slots=True)
class ScheduledRunFinished:
    system: str
    schedule: str
    run_id: str
    status: str


@dataclass(frozen=True, slots=True)
class CronCommandRejected:
    system: str
    reason: str


CronCommand = ApplySchedules | PauseSchedule | ResumeSchedule | ScheduledRunEnded | CronTick
CronEvent = (SchedulesApplied | SlotsDue | SlotFired | SlotsSkipped | SchedulePaused | ScheduleResumed
             | ScheduledRunFinished | CronCommandRejected)


def slot_key(schedule: str, slot_ms: int) -> str:
    """The idempotency key of a schedule's slot."""
    return f"{KEY_PREFIX}{schedule}/{slot_ms}"


def schedule_of(idempotency_key: str | None) -> str | None:
    """The schedule a run's idempotency key names, None when a schedule did not start it."""
    if idempotency_key is None or not idempotency_key.startswith(KEY_PREFIX):
        return None
    name, _, slot = idempotency_key[len(KEY_PREFIX):].rpartition("/")
    return name if name and slot.isdigit() else None


def keyed_run_id(system: str, idempotency_key: str) -> str:
    """``uuid5(namespace, system NUL key).hex``: the run id a keyed submit gets
    (``streams.publisher.run_id_for``; a test holds them equal)."""
    digest = bytearray(hashlib.sha1(_RUN_NAMESPACE + f"{system}\x00{idempotency_key}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()
