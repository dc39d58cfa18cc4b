"""Cron schedules on the real broker, with the orchestrator and the cron processor as
processes SIGKILLed while slots fire: each slot is fired once and is one run."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench._chaos_stack import Component  # importable through tests/conftest.py's finder
from taskplane.contract.cron import (
    ApplySchedules,
    PauseSchedule,
    SchedulePaused,
    ScheduleSpec,
    SlotFired,
    SlotsSkipped,
)
from taskplane.contract.messages import RunSubmitted, RunSucceeded
from taskplane.contract.plan import ExecutionPolicy, SystemPlan
from taskplane.contract.replay import LoggedCommand, LoggedEvent, replay_partition
from taskplane.processors.cron.decider import CronDecider
from taskplane.streams import kafka_clients
from taskplane.streams.log_reader import read_messages_to_end, read_to_end
from taskplane.streams.publisher import Publisher
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing.stack import EventLog

pytestmark = [pytest.mark.kafka]

SYSTEM = "cron-e2e"
EMPTY = SystemPlan(SYSTEM, "v1", (), ExecutionPolicy())  # no agents: a run succeeds when submitted
ALLOW = ScheduleSpec("every-2s", "*/2 * * * * *", "UTC", '{"n": 1}', "allow")
FORBID = ScheduleSpec("every-3s", "*/3 * * * * *", "UTC", "null", "forbid")


def fired(log: EventLog, schedule: str) -> list[SlotFired]:
    return [e for e in log.events(SlotFired) if e.schedule == schedule]


@pytest.mark.timeout(600)
def test_each_slot_is_one_run_across_orchestrator_and_cron_sigkills(
        kafka_config: dict[str, Any], kafka_bootstrap: str, unique_prefix: str, tmp_path: Path) -> None:
    topics = Topics(unique_prefix)
    ensure_topics(kafka_clients.admin(kafka_config), topics, catalog())
    env = {"TASKPLANE_BOOTSTRAP_SERVERS": kafka_bootstrap, "TASKPLANE_TOPIC_PREFIX": unique_prefix,
           "TASKPLANE_METRICS_PORT": "0", "TASKPLANE_RUNTIME_TICK_INTERVAL_MS": "100",
           "TASKPLANE_RUNTIME_MAX_BATCH_MS": "50"}
    processes = {name: Component(name, [sys.executable, "-m", "taskplane.cli", "processor", "run", name,
                                        "--instance", f"{name}-0"], env, tmp_path)
                 for name in ("orchestrator", "cron")}
    cron_log = EventLog(kafka_config, topics.schedule_events)
    run_log = EventLog(kafka_config, topics.events)
    try:
        for process in processes.values():
            process.start(timeout_s=120)
        with Publisher(kafka_config, topics) as publisher:
            publisher.to_cron(ApplySchedules(SYSTEM, "v1", EMPTY, (ALLOW, FORBID)))
        cron_log.wait_for(lambda log: len(fired(log, ALLOW.name)) >= 2, timeout_s=120)

        processes["orchestrator"].kill()  # slots keep firing into `commands` meanwhile
        before = len(fired(cron_log, ALLOW.name))
        cron_log.wait_for(lambda log: len(fired(log, ALLOW.name)) >= before + 2, timeout_s=60)
        processes["orchestrator"].start(timeout_s=120)
        back_ms = int(time.time() * 1000)

        processes["cron"].kill()  # slots due meanwhile fire when it is back (no deadline)
        killed_ms = int(time.time() * 1000)
        time.sleep(5)
        processes["cron"].start(timeout_s=120)
        cron_log.wait_for(lambda log: any(e.slot_ms > killed_ms + 8_000 for e in fired(log, ALLOW.name)),
                          timeout_s=120)
        # forbid fires a slot after another only once the orchestrator said the previous
        # run ended (ScheduledRunEnded): two after the orchestrator is back show the loop
        cron_log.wait_for(lambda log: len([e for e in fired(log, FORBID.name) if e.fired_ms > back_ms]) >= 2,
                          timeout_s=120)

        with Publisher(kafka_config, topics) as publisher:
            publisher.to_cron(PauseSchedule(SYSTEM, ALLOW.name, "test"))
            publisher.to_cron(PauseSchedule(SYSTEM, FORBID.name, "test"))
        cron_log.wait_for(lambda log: len(log.events(SchedulePaused)) == 2, timeout_s=60)
        every = cron_log.events(SlotFired)
        run_log.wait_for(lambda log: {e.run_id for e in log.events(RunSucceeded)} >= {e.run_id for e in every},
                         timeout_s=120)
        for process in processes.values():
            assert process.alive(), process.log.read_text()[-2000:]
    finally:
        for process in processes.values():
            process.stop()
        cron_log.close()
        run_log.close()

    every = cron_log.events(SlotFired)
    slots = [(e.schedule, e.slot_ms) for e in every]
    assert len(slots) == len(set(slots)), "a slot fired twice"
    allow = sorted(e.slot_ms for e in fired(cron_log, ALLOW.name))
    assert allow == list(range(allow[0], allow[-1] + 1, 2_000)), "an every-2s slot is missing"
    assert any(e.slot_ms < e.fired_ms - 2_000 for e in fired(cron_log, ALLOW.name)), "no slot fired on recovery"
    assert all(s.reason != "past startingDeadline" for s in cron_log.events(SlotsSkipped))
    submitted = [e for e in run_log.events(RunSubmitted) if (e.idempotency_key or "").startswith("cron/")]
    runs = [e.run_id for e in submitted]
    assert len(runs) == len(set(runs)), "a slot's run was submitted twice"
    assert sorted(runs) == sorted(e.run_id for e in every)
    assert {e.idempotency_key for e in submitted} == {e.idempotency_key for e in every}
    # taskplane verify's re-decision: the commands on `schedules` (Ticks, apply, pauses,
    # run ends) decided again with what the events recorded give the same events
    commands, events = _recorded(kafka_config, topics)
    report = replay_partition(CronDecider(), 0, commands, events)
    assert report.decisions > len(every) and not report.divergences, report.divergences[:3]
    # and the state is a fold of the events (what a rebuild from schedule-events restores)
    folded: Any = None
    for logged in events:
        folded = CronDecider().evolve(folded, logged.event)
    serde = Serde()
    stored = [serde.decode(v)[1] for _p, _k, v in read_to_end(kafka_config, topics.cron_changelog) if v]
    assert folded is not None and stored[-1] == folded


def _recorded(kafka_config: dict[str, Any], topics: Topics) -> tuple[list[LoggedCommand], list[LoggedEvent]]:
    serde = Serde()
    commands, events = [], []
    for record in read_messages_to_end(kafka_config, topics.schedules):
        meta, command = serde.decode(record.value())
        key = record.key().decode() if record.key() else ""
        commands.append(LoggedCommand(record.offset(), key, meta.message_id, command, record.timestamp()[1]))
    for record in read_messages_to_end(kafka_config, topics.schedule_events):
        meta, event = serde.decode(record.value())
        events.append(LoggedEvent(record.offset(), record.key().decode(), meta.causation_id or "", event))
    return commands, events
