"""``taskplane verify --processor cron|breaker`` against logs the real runtimes wrote on
the real broker (slots fired by log time across a restart; permits queued, granted by
Ticks and released, a breaker opened): the installed deciders decide them the same and
each changelog is the fold of its events; a changed rule or a tampered event diverges."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Any

import pytest
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.contract.breaker import BreakerOpened
from taskplane.contract.cron import (
    ApplySchedules,
    PauseSchedule,
    SchedulePaused,
    ScheduleSpec,
    SlotFired,
)
from taskplane.contract.messages import ToolOutcome
from taskplane.contract.permits import AcquirePermit, PermitGranted, PermitQueued
from taskplane.contract.plan import ExecutionPolicy, SystemPlan
from taskplane.processors.breaker import permits
from taskplane.processors.breaker.app import breaker_runtime
from taskplane.processors.breaker.verify import read_breaker, verify_breaker
from taskplane.processors.cron import decider as cron_decider
from taskplane.processors.cron.app import cron_runtime
from taskplane.processors.cron.verify import read_cron, verify_cron
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.serde import Serde, new_meta
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import EventLog
from tests.processors.test_verify_processors import tampered

pytestmark = pytest.mark.kafka

SYSTEM = "verify-cron"
TOOL = "verify.tool"
PLAN = SystemPlan(SYSTEM, "v1", (), ExecutionPolicy())
EVERY = ScheduleSpec("every-second", "* * * * * *", "UTC", '{"n": 1}', "allow")
FORBID = ScheduleSpec("every-2s", "*/2 * * * * *", "UTC", "null", "forbid")  # no orchestrator: its run never ends
SERDE = Serde()


class Running:
    """A processor's runtime in a thread of this process."""

    def __init__(self, make: Any, kafka: dict[str, Any], topics: Topics, name: str) -> None:
        settings = RuntimeSettings(instance_id=f"{topics.prefix}-{name}", group_id=f"{topics.prefix}-{name}",
                                   max_batch_ms=50, tick_interval_ms=100)
        self.runtime = make(kafka, topics, settings)
        self.thread = threading.Thread(target=self.runtime.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.runtime.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def topics(kafka_config: dict[str, Any], unique_prefix: str) -> Topics:
    topics = Topics(unique_prefix)
    ensure_topics(kafka_clients.admin(kafka_config), topics, catalog())
    return topics


def test_a_cron_log_written_by_the_runtime_verifies_the_same(
        kafka_config: dict[str, Any], kafka_bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch) -> None:
    with EventLog(kafka_config, topics.schedule_events) as log:
        cron = Running(cron_runtime, kafka_config, topics, "cron")
        try:
            with Publisher(kafka_config, topics) as publisher:
                publisher.to_cron(ApplySchedules(SYSTEM, "v1", PLAN, (EVERY, FORBID)))
            log.wait_for(lambda events: len(events.events(SlotFired)) >= 3, 60)
            cron.stop()  # a restart restores from the changelog and goes on where it was
            cron = Running(cron_runtime, kafka_config, topics, "cron")
            fired = len(log.events(SlotFired))
            log.wait_for(lambda events: len(events.events(SlotFired)) >= fired + 3, 60)
            with Publisher(kafka_config, topics) as publisher:
                publisher.to_cron(PauseSchedule(SYSTEM, EVERY.name, "test"))
            log.wait_for(lambda events: events.events(SchedulePaused), 60)
        finally:
            cron.stop()

    recorded = read_cron(kafka_config, topics)
    verdict = verify_cron(recorded)
    assert not verdict.divergences, verdict.divergences[:2]
    assert not verdict.state_mismatches and verdict.states_compared == 1
    assert verdict.total("decisions") >= 5 and verdict.total("events") == len(log.all_events())
    monkeypatch.setenv("TASKPLANE_BOOTSTRAP_SERVERS", kafka_bootstrap)
    result = CliRunner().invoke(app, ["verify", "--processor", "cron", "--prefix", topics.prefix, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["diverged_keys"] == 0

    first = verify_cron(tampered(recorded, SlotFired, lambda e: replace(e, fired_ms=e.fired_ms + 1))).first
    assert first is not None and first.key == SYSTEM and isinstance(first.expected, SlotFired)
    monkeypatch.setattr(cron_decider, "slot_key", lambda name, slot: f"changed/{name}/{slot}")
    result = CliRunner().invoke(app, ["verify", "--processor", "cron", "--prefix", topics.prefix])
    assert result.exit_code == 1, result.output
    assert f"first divergence, system '{SYSTEM}'" in result.stdout and "DIVERGED" in result.stdout


def send(kafka_config: dict[str, Any], topics: Topics, commands: list[Any]) -> None:
    producer = kafka_clients.producer(kafka_config, partitioner="murmur2_random")
    for command in commands:
        producer.produce(topics.tool_outcomes, SERDE.encode(command, new_meta(TOOL, type(command).__name__, 0)), TOOL)
    assert producer.flush(30) == 0


def ask(key: str) -> AcquirePermit:
    # 120/min (a token every 0.5 s, a bucket of 2), 3 at once
    return AcquirePermit(TOOL, key, 0, "w1", f"run-{key}", "step", 1, 120, 60_000, 3, 20_000)


def test_a_governor_log_written_by_the_runtime_verifies_the_same(
        kafka_config: dict[str, Any], topics: Topics, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"call-{n}" for n in range(8)]
    with EventLog(kafka_config, topics.breaker_events) as log:
        breaker = Running(breaker_runtime, kafka_config, topics, "breaker")
        try:
            send(kafka_config, topics, [ask(key) for key in keys])
            released: set[str] = set()
            while len(released) < len(keys):  # each granted call reports, freeing its place
                granted = log.wait_for(lambda events, done=frozenset(released): {g.key for g in events.events(PermitGranted)}
                                       - done, 60)
                send(kafka_config, topics, [ToolOutcome(TOOL, True, 2, 60_000, f"run-{k}", None, k) for k in granted])
                released |= granted
            send(kafka_config, topics, [ToolOutcome(TOOL, False, 2, 60_000, "run-x", "502", None)] * 2)
            log.wait_for(lambda events: events.events(BreakerOpened), 60)
        finally:
            breaker.stop()
    assert log.events(PermitQueued)  # the rate held some back: Ticks granted them

    recorded = read_breaker(kafka_config, topics)
    verdict = verify_breaker(recorded)
    assert not verdict.divergences, verdict.divergences[:2]
    assert not verdict.state_mismatches and verdict.states_compared == 1
    assert verdict.total("decisions") >= len(keys) * 2 + 2 and verdict.total("events") == len(log.all_events())

    first = verify_breaker(tampered(recorded, PermitGranted, lambda e: replace(e, granted_ms=e.granted_ms - 1))).first
    assert first is not None and first.key == TOOL and isinstance(first.expected, PermitGranted)
    monkeypatch.setattr(permits, "burst", lambda state: 1)  # a bucket of one call: the first burst differs
    first = verify_breaker(recorded).first
    assert first is not None and first.key == TOOL
