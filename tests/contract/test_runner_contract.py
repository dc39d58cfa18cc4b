"""The runner contract: ``ProcessorRuntime`` on the real broker reproduces
``InMemoryRunner``, the reference semantics, on the same command logs. Equal events per
key, equal states byte for byte (the changelog against the reference state encoded the
same way), and every event id unique. Run for the orchestrator and the breaker. The
orchestrator runs as production wires it (``app.orchestrator_decider`` and
``app.orchestrator_hints``): its hint source is deterministic (free slots as of log
time; one free-slot store per process, scenarios contend for slots within a partition),
so root grants from hints reproduce too.

Each scenario builds its command log by driving ``InMemoryRunner`` and asserting the
facts it is about (two leases expired by one Tick, a dead letter replayed, a decider
crash turned into a rejection); the runtime then gets the same log on the broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from taskplane.contract.breaker import BreakerOpened
from taskplane.contract.decider import Decider, InMemoryRunner
from taskplane.contract.messages import (
    CancelRun,
    ClaimTask,
    CommandRejected,
    CompleteTask,
    LeaseExpired,
    LeaseGranted,
    RunSucceeded,
    TaskDeadLettered,
    ToolOutcome,
)
from taskplane.contract.plan import ExecutionPolicy
from taskplane.contract.plans import PlanBook
from taskplane.processors.breaker.app import BREAKER
from taskplane.processors.breaker.decider import BreakerDecider
from taskplane.processors.orchestrator.app import (
    ORCHESTRATOR,
    OrchestratorSettings,
    orchestrator_decider,
    orchestrator_hints,
)
from taskplane.processors.orchestrator.verify import read_cluster, verify_log
from taskplane.streams.offsets import read_all
from taskplane.streams.partitioning import partition_for
from taskplane.streams.runtime import ProcessorRuntime, state_meta
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.serde import Serde, new_meta
from taskplane.streams.topics import Topics, catalog, ensure_topics
from tests.processors._decider_helpers import Driver, document_pipeline

# Log time of the first command: an hour ago, inside every topic's retention (a record
# older than retention.ms may be deleted before the runtime reads it).
BASE_MS = (int(time.time()) // 60) * 60_000 - 3_600_000
NO_WALL_CLOCK_TICKS = 10**9  # the runtime ticks only on the logs' own Tick commands
RUN_PARTITIONS = 3


def partition_of(key: str) -> int:
    return partition_for(key, RUN_PARTITIONS)


def production() -> tuple[Decider[Any, Any, Any], Any]:
    """The orchestrator's decider and hint source as ``app.orchestrator_runtime`` wires them."""
    settings, plans = OrchestratorSettings(), PlanBook()
    return orchestrator_decider(plans, settings), orchestrator_hints(plans, settings)


# ---------------------------------------------------------------- command logs


@dataclass
class CommandLog:
    """Commands in log order: (key, command, at_ms); key None is a Tick for every key."""

    name: str
    processor: str  # orchestrator | breaker
    entries: list[tuple[str | None, Any, int]] = field(default_factory=list)


class Recording:
    """Stands in for a Driver's runner and records what is sent as a CommandLog."""

    def __init__(self, log: CommandLog, decider: Any, hints: Any = None) -> None:
        self.log = log
        self.runner: InMemoryRunner[Any, Any, Any] = InMemoryRunner.of(decider, hints, partition_of)
        self.states = self.runner.states

    def handle(self, key: str, command: Any, at_ms: int) -> list[Any]:
        self.log.entries.append((key, command, at_ms))
        return self.runner.handle(key, command, at_ms)

    def advance(self, now_ms: int) -> list[Any]:
        self.log.entries.append((None, self.runner.decider.tick(now_ms), now_ms))
        return self.runner.advance(now_ms)


class CrashOnCancel:
    """The orchestrator, except that deciding a CancelRun with reason "crash" raises:
    the path where a decider bug becomes a rejection and the partition goes on."""

    def __init__(self) -> None:
        self._inner, self.hints = production()

    def decide(self, state: Any, command: Any, at_ms: int, given: Any = None) -> Any:
        if isinstance(command, CancelRun) and command.reason == "crash":
            raise RuntimeError("decider bug")
        return self._inner.decide(state, command, at_ms, given)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def orchestrator_log() -> CommandLog:
    """Four runs on one clock: one succeeds, two lose their leases to one Tick, one
    dead-letters and is replayed; stale and unknown commands are rejected."""
    log = CommandLog("orchestrator", "orchestrator")
    recording = Recording(log, *production())
    plan = document_pipeline(ExecutionPolicy(lease_timeout_ms=10_000, max_retries=2, initial_backoff_ms=1_000))
    runs = {name: Driver(plan=plan, run_id=name, now=BASE_MS, runner=recording)  # type: ignore[arg-type]
            for name in ("run-ok", "run-a", "run-b", "run-dl")}

    def at(now: int) -> None:
        for driver in runs.values():
            driver.now = now

    for driver in runs.values():
        driver.submit()
    ok = runs["run-ok"]
    for task in ("parser", "validator", "summarizer", "publisher"):
        ok.now += 10
        ok.run_task(task)
    assert isinstance(recording.runner.log[-1][1], RunSucceeded)
    at(ok.now + 10)
    runs["run-a"].claim("parser", "w1")
    runs["run-b"].claim("parser", "w2")
    expired = runs["run-a"].advance(20_000)  # one Tick wakes both runs' leases
    at(runs["run-a"].now)
    assert [type(e) for e in expired].count(LeaseExpired) == 2
    dead = runs["run-dl"]
    dead.claim("parser")
    dead.fail("parser")
    dead.retry_until_ready("parser")
    at(dead.now)
    dead.claim("parser")
    assert any(isinstance(event, TaskDeadLettered) for event in dead.fail("parser"))
    dead.replay("parser")
    dead.run_task("parser")
    rejected = runs["run-a"].send(ClaimTask("run-a", "parser", 1, "w9"))  # a stale attempt
    rejected += recording.handle("no-such-run", ClaimTask("no-such-run", "parser", 1, "w1"), dead.now)
    assert all(isinstance(e, CommandRejected) for e in rejected) and rejected
    runs["run-b"].cancel()
    assert not recording.runner.failures
    return log


def crash_log() -> CommandLog:
    """A decider bug on one run's command becomes a rejection; that run and another on
    the same clock go on (a completed task, a lease expired by a Tick)."""
    log = CommandLog("orchestrator-crash", "orchestrator")
    crash = CrashOnCancel()
    recording = Recording(log, crash, crash.hints)
    driver = Driver(run_id="run-crash", now=BASE_MS, runner=recording)  # type: ignore[arg-type]
    other = Driver(run_id="run-other", now=BASE_MS, runner=recording)  # type: ignore[arg-type]
    driver.submit()
    other.submit()
    driver.claim("parser")
    rejected = driver.cancel("crash")
    assert isinstance(rejected[0], CommandRejected) and "internal error" in rejected[0].reason
    driver.now += 5
    driver.run_task("parser")
    other.now = driver.now
    other.claim("parser")
    assert any(isinstance(event, LeaseExpired) for event in other.advance(20_000))
    assert len(recording.runner.failures) == 1
    return log


def breaker_log() -> CommandLog:
    """Two tools: one opens, half-opens on a Tick and closes on a probe; the other fails
    once and stays closed."""
    log = CommandLog("breaker", "breaker")
    recording = Recording(log, BreakerDecider())
    now = BASE_MS
    for index, ok in enumerate((False, False, True, False, False, False)):
        now += 10
        recording.handle("tool.a", ToolOutcome("tool.a", ok, 3, 30_000, "run-1", None if ok else "502"), now)
        recording.handle("tool.b", ToolOutcome("tool.b", index > 0, 3, 30_000, "run-1", None if index else "503"), now)
    assert any(isinstance(e, BreakerOpened) for _, e in recording.runner.log)
    now += 31_000
    assert recording.advance(now)  # half-open
    recording.handle("tool.a", ToolOutcome("tool.a", True, 3, 30_000, "run-2"), now + 1)
    assert not recording.runner.failures
    return log


def root_grants_log() -> CommandLog:
    """Completions with free slots, then submits on the same partition within the
    window: roots granted from the hints (and, after the window, one submit on the same
    and one on another partition, offered). The grants are recorded as the submits'
    input. The free-slot store is shared by a process's partitions, but the broker
    interleaves partitions in no fixed order: slots are only contended within one
    partition here, so both runners give the same (tests/processors/
    test_orchestrator_root_grants.py covers the sharing)."""
    log = CommandLog("orchestrator-root-grants", "orchestrator")
    recording = Recording(log, *production())
    home = partition_of("grants-0")
    same = [name for name in (f"grants-{i}" for i in range(1, 60)) if partition_of(name) == home][:3]
    elsewhere = next(name for name in (f"grants-x{i}" for i in range(60)) if partition_of(name) != home)
    first = Driver(run_id="grants-0", now=BASE_MS, runner=recording)  # type: ignore[arg-type]
    first.submit()
    for task in ("parser", "validator", "summarizer", "publisher"):
        first.now += 5
        if first.task(task).status.value == "ready":
            first.claim(task, "w1")
        slots = 2 if task == "publisher" else 0
        first.send(CompleteTask(first.run_id, task, "w1", first.task(task).epoch, '"ok"', slots))
    granted = Driver(run_id=same[0], now=first.now + 20, runner=recording)  # type: ignore[arg-type]
    events = granted.submit()
    assert [type(e) for e in events][-1] is LeaseGranted and events[0].free_slots == ("w1",)
    assert type(Driver(run_id=same[1], now=first.now + 40, runner=recording).submit()[-1]) is LeaseGranted  # type: ignore[arg-type]
    late = Driver(run_id=same[2], now=first.now + 40 + 10_000, runner=recording)  # type: ignore[arg-type]
    assert type(late.submit()[-1]) is not LeaseGranted  # both slots used
    assert type(Driver(run_id=elsewhere, now=late.now + 5, runner=recording).submit()[-1]) is not LeaseGranted  # type: ignore[arg-type]
    assert any(type(e).__name__ == "LeaseExpired" for e in late.advance(60_000))  # granted roots expire
    assert not recording.runner.failures
    return log


LOGS = {"orchestrator": orchestrator_log, "orchestrator-crash": crash_log, "breaker": breaker_log,
        "orchestrator-root-grants": root_grants_log}


def decider_of(log: CommandLog) -> tuple[Decider[Any, Any, Any], Any]:
    """The decider and its hint source (a factory, per partition), fresh."""
    if log.name == "orchestrator-crash":
        crash = CrashOnCancel()
        return crash, crash.hints  # type: ignore[return-value]
    if log.processor == "orchestrator":
        return production()
    return BreakerDecider(), None


# ---------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    events: dict[str, list[Any]]  # per key, in log order
    states: dict[str, bytes]  # per key, encoded as the changelog holds it
    event_ids: list[str]
    topics: Topics | None = None


def reference(log: CommandLog, serde: Serde) -> Outcome:
    runner: InMemoryRunner[Any, Any, Any] = InMemoryRunner.of(*decider_of(log), partition_of)
    for key, command, at_ms in log.entries:
        if key is None:
            runner.advance(at_ms)
        else:
            runner.handle(key, command, at_ms)
    events: dict[str, list[Any]] = defaultdict(list)
    for key, event in runner.log:
        events[key].append(event)
    snapshot = runner.decider.snapshot  # the changelog holds what snapshot() gives (plans by reference)
    states = {key: serde.encode(snapshot(state), state_meta(key)) for key, state in runner.states.items()
              if state is not None}
    return Outcome(dict(events), states, [])


@pytest.fixture(scope="module")
def serde() -> Serde:
    return Serde()


@pytest.mark.parametrize("name", sorted(LOGS))
def test_the_scenarios_do_what_they_say(name: str, serde: Serde) -> None:
    log = LOGS[name]()  # each builder asserts its facts on the way
    expected = reference(log, serde)
    assert len(expected.events) >= 2 and expected.states
    assert any(key is None for key, _command, _at in log.entries)  # every log ticks


@pytest.mark.kafka
@pytest.mark.parametrize("name", sorted(LOGS))
def test_the_runtime_reproduces_the_in_memory_runner(name: str, serde: Serde, kafka_config: dict[str, Any]) -> None:
    log = LOGS[name]()
    expected = reference(log, serde)
    outcome = run_on_broker(dict(kafka_config), log, serde)
    assert outcome.events == expected.events
    assert outcome.states == expected.states
    assert len(set(outcome.event_ids)) == len(outcome.event_ids), "event ids repeat"
    if log.processor == "orchestrator":  # taskplane verify on the live topics: the same decisions
        assert outcome.topics is not None
        first = verify_log(read_cluster(dict(kafka_config), outcome.topics)).first
        if log.name == "orchestrator-crash":  # production's decider does not crash on that cancel
            assert first is not None and isinstance(first.command.command, CancelRun)  # type: ignore[union-attr]
            assert "internal error" in first.expected.reason
        else:
            assert first is None, first


def run_on_broker(kafka: dict[str, Any], log: CommandLog, serde: Serde) -> Outcome:
    topics = Topics(f"contract-{log.name}-{uuid.uuid4().hex[:8]}")
    ensure_topics(AdminClient(kafka), topics, catalog(run_partitions=RUN_PARTITIONS, tool_partitions=2))
    spec = (ORCHESTRATOR if log.processor == "orchestrator" else BREAKER).under(topics)
    produce_log(kafka, topics.name(spec.input), log, serde)
    expected_events = sum(len(events) for events in reference(log, serde).events.values())
    settings = RuntimeSettings(instance_id=f"{topics.prefix}-0", max_batch_ms=50, session_timeout_ms=6_000,
                               tick_interval_ms=NO_WALL_CLOCK_TICKS)
    decider, hints = decider_of(log)
    runtime = ProcessorRuntime(decider, spec, kafka, topics, settings, hints=hints)
    failures: list[BaseException] = []

    def run_runtime() -> None:
        try:
            runtime.run()
        except BaseException as error:  # the test fails on it below, not in a thread
            failures.append(error)

    thread = threading.Thread(target=run_runtime, daemon=True)
    thread.start()
    try:
        records = read_committed(kafka, topics.name(spec.events), expected_events, failures)
    finally:
        runtime.stop()
        thread.join(60)
    assert not failures, failures
    events: dict[str, list[Any]] = defaultdict(list)
    ids = []
    for key, value in records:
        meta, event = serde.decode(value)
        events[key].append(event)
        ids.append(meta.message_id)
    states: dict[str, bytes] = {}
    for _partition, key, value in read_all(kafka, topics.name(spec.changelog)):
        if value is None:
            states.pop(key, None)
        else:
            states[key] = value
    return Outcome(dict(events), states, ids, topics)


def produce_log(kafka: dict[str, Any], topic: str, log: CommandLog, serde: Serde) -> None:
    """The log's commands at their log times; a Tick goes to every partition, so every
    key sees it after the commands before it, as in the reference."""
    partitions = len(AdminClient(kafka).list_topics(topic, timeout=30).topics[topic].partitions)
    producer = Producer({**kafka, "acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random"})
    for key, command, at_ms in log.entries:
        meta = new_meta(key or "", type(command).__name__, at_ms)
        value = serde.encode(command, meta)
        if key is None:
            for partition in range(partitions):
                producer.produce(topic, value, b"", partition, timestamp=at_ms)
        else:
            producer.produce(topic, value, key.encode(), timestamp=at_ms)
    assert producer.flush(30) == 0


def read_committed(kafka: dict[str, Any], topic: str, expected: int,
                   failures: list[BaseException]) -> list[tuple[str, bytes]]:
    """Committed records of ``topic`` in offset order per partition, once ``expected``
    arrived (or the processor died, or a generous guard passed: then the comparison
    fails and says what was missing)."""
    consumer = Consumer({**kafka, "group.id": f"contract-{uuid.uuid4().hex}", "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    partitions = len(AdminClient(kafka).list_topics(topic, timeout=30).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records: list[tuple[str, bytes]] = []
    guard = time.monotonic() + 90
    try:
        while len(records) < expected and not failures and time.monotonic() < guard:
            for record in consumer.consume(1000, 0.5):
                if record.error() is not None:
                    assert record.error().code() == KafkaError._PARTITION_EOF, record.error()
                    continue
                records.append((record.key().decode(), record.value()))
    finally:
        consumer.close()
    return records
