"""``taskplane verify --processor cron``: ``schedules`` (applies, pauses, resumes, run
ends and the processor's own Ticks) re-decided against ``schedule-events`` by this
version's cron decider, and ``cron-changelog`` compared with the fold of the events
(``processors/verifying.py``). The calendar's answers (which wall times are slots) are
the decider's recorded input: ``CronDecider.recorded`` reads them back from
``SchedulesApplied``, ``ScheduleResumed`` and ``SlotsDue``, so the replay fires the slots
the log fired whatever tz database it runs with, and a decision rule that changed
(a policy, the starting deadline) is named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskplane.processors.cron.decider import CronDecider
from taskplane.processors.recorded import RecordedLog, Verdict, read_cluster
from taskplane.processors.verifying import Verifiable, by_key, verify_processor
from taskplane.streams.topics import Topics

ROLES = ("schedules", "schedule-events", "cron-changelog")
VERIFIABLE = Verifiable("cron", ROLES, "system", CronDecider, by_key)


def read_cron(kafka_config: dict[str, Any], topics: Topics) -> RecordedLog:
    return read_cluster(kafka_config, topics, ROLES)


def verify_cron(log: RecordedLog, system: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> Verdict:
    return verify_processor(VERIFIABLE, log, system, progress)
