"""The transactional runtime on the real broker, with the counting decider in real
processes: SIGKILL at random points, rebalances, poison records, state restore."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.counter.app import counter_serde, counter_spec, counter_topics
from bench.counter.decider import Add, Added, AddRejected, Counter, CounterDecider
from taskplane.streams import kafka_clients, runtime_clients
from taskplane.streams import restore as restore_module
from taskplane.streams.runtime import ProcessorRuntime, state_meta
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.serde import new_meta
from taskplane.streams.topics import Topics, ensure_topics
from tests.streams.failing_commits import FailingCommits

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
KEYS = 37


class Processor:
    """One counter processor process."""

    def __init__(self, bootstrap: str, prefix: str, instance: str, log_dir: Path) -> None:
        self.args = [sys.executable, "-m", "bench.counter.app", "--bootstrap", bootstrap,
                     "--prefix", prefix, "--instance", instance]
        self.log = log_dir / f"{instance}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Processor:
        already = self.log.read_bytes().count(b"ready\n") if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60  # signal handlers are installed once it says ready
        while self.log.read_bytes().count(b"ready\n") <= already:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "processor did not start"
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def counter(kafka_config: dict[str, Any], unique_prefix: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(kafka_config), topics, counter_topics())
    started: list[Processor] = []

    def processor(instance: str) -> Processor:
        proc = Processor(kafka_config["bootstrap.servers"], unique_prefix, instance, tmp_path)
        started.append(proc)
        return proc.start()

    yield {"topics": topics, "processor": processor, "kafka": kafka_config}
    for proc in started:
        proc.ensure_dead()


def produce(kafka: dict[str, Any], topic: str, adds: list[Add], per_second: float | None = None) -> None:
    serde = counter_serde()
    producer = Producer({**kafka, "partitioner": "murmur2_random", "linger.ms": 5})
    started = time.monotonic()
    for index, add in enumerate(adds):
        producer.produce(topic, serde.encode(add, new_meta(add.key, "Add", int(time.time() * 1000))), add.key)
        producer.poll(0)
        if per_second and index % 100 == 0:
            ahead = index / per_second - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(30) == 0


def read_all(kafka: dict[str, Any], topic: str, expect: int | None = None, timeout_s: float = 60) -> list[tuple[str, Any]]:
    """Every committed record of ``topic``, decoded; waits until ``expect`` arrived."""
    serde = counter_serde()
    consumer = Consumer({**kafka, "group.id": f"reader-{time.monotonic_ns()}", "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    partitions = len(AdminClient(kafka).list_topics(topic, timeout=10).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records: list[tuple[str, Any]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for record in consumer.consume(1000, 0.5):
                if record.error():
                    if record.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(record.partition())
                    continue
                at_end.discard(record.partition())
                value = record.value()
                records.append((record.key().decode(), None if value is None else serde.decode(value)[1]))
            if len(at_end) == partitions and (expect is None or len(records) >= expect):
                break
    finally:
        consumer.close()
    return records


def adds(count: int, start: int = 0) -> list[Add]:
    return [Add(f"key-{seq % KEYS}", seq % 7 + 1, seq) for seq in range(start, start + count)]


def expected_totals(commands: list[Add]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for add in commands:
        totals[add.key] = totals.get(add.key, 0) + add.amount
    return totals


def assert_exactly_once(events: list[tuple[str, Any]], commands: list[Add]) -> None:
    seqs = Tally(event.seq for _, event in events if isinstance(event, Added))
    duplicates = {seq: n for seq, n in seqs.items() if n > 1}
    missing = {add.seq for add in commands} - set(seqs)
    assert not duplicates, f"applied more than once: {sorted(duplicates)[:10]}"
    assert not missing, f"never applied: {sorted(missing)[:10]}"
    last_total: dict[str, int] = {}
    for key, event in events:  # per key, the log order is the processing order
        if isinstance(event, Added):
            assert event.total == last_total.get(key, 0) + event.amount
            last_total[key] = event.total
    assert last_total == expected_totals(commands)


def final_states(kafka: dict[str, Any], topic: str) -> dict[str, Counter]:
    states: dict[str, Counter] = {}
    for key, state in read_all(kafka, topic):
        if state is None:
            states.pop(key, None)
        else:
            states[key] = state
    return states


def test_exactly_once_under_sigkill(counter: dict[str, Any]) -> None:
    topics, kafka = counter["topics"], counter["kafka"]
    commands = adds(12_000)
    producer = threading.Thread(target=produce, args=(kafka, topics.commands, commands, 2_000.0))
    producer.start()
    rng = random.Random(int(os.environ.get("TASKPLANE_TEST_SEED", "7")))
    proc = counter["processor"]("p0")
    for _ in range(4):  # K kills at random points while commands stream in
        time.sleep(rng.uniform(0.8, 2.0))
        proc.kill()
        proc = counter["processor"]("p0")
    producer.join()
    events = read_all(kafka, topics.events, expect=len(commands), timeout_s=90)
    assert_exactly_once(events, commands)
    states = final_states(kafka, topics.name("changelog"))
    assert {key: s.total for key, s in states.items()} == expected_totals(commands)
    assert all(s.count == sum(1 for a in commands if a.key == key) for key, s in states.items())
    assert proc.terminate() == 0


def test_two_instances_split_partitions_and_survive_rebalance(counter: dict[str, Any]) -> None:
    topics, kafka = counter["topics"], counter["kafka"]
    commands = adds(8_000)
    first = counter["processor"]("a")
    second = counter["processor"]("b")
    producer = threading.Thread(target=produce, args=(kafka, topics.commands, commands, 2_000.0))
    producer.start()
    time.sleep(1.5)
    assert second.terminate() == 0  # graceful leave mid-stream: partitions move to `a`
    time.sleep(1.0)
    counter["processor"]("c")  # and a newcomer takes some back
    producer.join()
    events = read_all(kafka, topics.events, expect=len(commands), timeout_s=90)
    assert_exactly_once(events, commands)
    assert first.proc is not None and first.proc.poll() is None


def test_poison_records_are_set_aside_and_processing_continues(counter: dict[str, Any]) -> None:
    topics, kafka = counter["topics"], counter["kafka"]
    counter["processor"]("p0")
    producer = Producer(kafka)
    producer.produce(topics.commands, b"\x00not avro at all", b"key-1")
    producer.produce(topics.commands, b"\xc3\x01" + b"\xff" * 8 + b"unknown schema", b"key-2")
    assert producer.flush(10) == 0
    commands = adds(50)
    produce(kafka, topics.commands, commands)
    events = read_all(kafka, topics.events, expect=len(commands))
    assert_exactly_once(events, commands)

    consumer = Consumer({**kafka, "group.id": f"poison-{time.monotonic_ns()}", "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe([topics.poison])
    poisoned = []
    deadline = time.monotonic() + 30
    while len(poisoned) < 2 and time.monotonic() < deadline:
        record = consumer.poll(0.5)
        if record is not None and not record.error():
            poisoned.append(record)
    consumer.close()
    assert len(poisoned) == 2
    for record in poisoned:
        headers = dict(record.headers())
        assert headers["source.topic"] == topics.commands.encode()
        assert int(headers["source.partition"]) >= 0 and int(headers["source.offset"]) >= 0
        assert headers["error"]
    assert {r.value() for r in poisoned} == {b"\x00not avro at all", b"\xc3\x01" + b"\xff" * 8 + b"unknown schema"}


def test_rejected_command_is_an_event_not_a_crash(counter: dict[str, Any]) -> None:
    topics, kafka = counter["topics"], counter["kafka"]
    counter["processor"]("p0")
    commands = [Add("key-0", 5, 0), Add("key-0", -1, 1), Add("key-0", 2, 2)]
    produce(kafka, topics.commands, commands)
    events = [e for _, e in read_all(kafka, topics.events, expect=3)]
    assert [type(e) for e in events] == [Added, AddRejected, Added]
    assert events[2].total == 7


def test_restore_from_changelog_and_rebuild_from_events_agree(counter: dict[str, Any]) -> None:
    topics, kafka = counter["topics"], counter["kafka"]
    commands = adds(3_000)
    proc = counter["processor"]("p0")
    produce(kafka, topics.commands, commands)
    read_all(kafka, topics.events, expect=len(commands))
    assert proc.terminate() == 0
    serde = counter_serde()
    live = final_states(kafka, topics.name("changelog"))
    assert len(live) == KEYS

    # Restart from the changelog and apply more: totals continue where they were.
    proc = counter["processor"]("p0")
    more = adds(500, start=len(commands))
    produce(kafka, topics.commands, more)
    read_all(kafka, topics.events, expect=len(commands) + len(more))
    assert proc.terminate() == 0
    from_changelog = final_states(kafka, topics.name("changelog"))
    assert {k: s.total for k, s in from_changelog.items()} == expected_totals(commands + more)

    # Lose the changelog: the processor folds `events` and re-seeds a new changelog.
    admin = AdminClient(kafka)  # keep the handle alive until the future resolves
    admin.delete_topics([topics.name("changelog")])[topics.name("changelog")].result(30)
    time.sleep(2)
    proc = counter["processor"]("p0")
    produce(kafka, topics.commands, [Add("key-0", 1, 10**6)])  # make it commit once
    read_all(kafka, topics.events, expect=len(commands) + len(more) + 1)
    deadline = time.monotonic() + 30
    rebuilt: dict[str, Counter] = {}
    while time.monotonic() < deadline and len(rebuilt) < KEYS:
        time.sleep(0.5)
        rebuilt = final_states(kafka, topics.name("changelog"))
    assert proc.terminate() == 0
    expected = {**{k: s for k, s in from_changelog.items()}}
    expected["key-0"] = Counter("key-0", expected["key-0"].total + 1, expected["key-0"].count + 1)
    assert rebuilt == expected
    for key in from_changelog:  # byte for byte, as the changelog stores them
        assert serde.encode(rebuilt[key], state_meta(key)) == serde.encode(expected[key], state_meta(key))


def test_a_second_instance_with_the_same_id_fences_the_first(counter: dict[str, Any]) -> None:
    """A zombie (same instance id, so the same transactional id) cannot commit: the
    newcomer's init_transactions fences it, it exits with EXIT_FENCED and no traceback,
    and every command is still applied exactly once."""
    from taskplane.streams.runtime import EXIT_FENCED

    topics, kafka = counter["topics"], counter["kafka"]
    first_batch = adds(2_000)
    zombie = counter["processor"]("same")
    produce(kafka, topics.commands, first_batch)
    read_all(kafka, topics.events, expect=len(first_batch))
    newcomer = counter["processor"]("same")
    commands = first_batch + adds(2_000, start=len(first_batch))
    produce(kafka, topics.commands, commands[len(first_batch):], per_second=2_000.0)
    assert zombie.proc is not None
    assert zombie.proc.wait(60) == EXIT_FENCED
    log = zombie.log.read_text()
    assert "fenced" in log and "Traceback" not in log
    events = read_all(kafka, topics.events, expect=len(commands), timeout_s=90)
    assert_exactly_once(events, commands)
    assert newcomer.terminate() == 0


class BatchSizes(RuntimeObserver):
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.seconds: list[float] = []
        self.commits: list[float] = []

    def committed(self, processor: str, seconds: float) -> None:
        self.commits.append(seconds)

    def batch(self, processor: str, records: int, seconds: float) -> None:
        self.sizes.append(records)
        self.seconds.append(seconds)


def test_a_lingering_batch_collects_records_that_arrive_after_its_first(counter: dict[str, Any]) -> None:
    """linger_ms: the batch keeps collecting after its first record; with a linger far
    longer than the test, it closes only when full, so records produced one at a time
    (each flushed alone) still commit in one transaction per max_batch_records."""
    kafka, topics = counter["kafka"], counter["topics"]
    observer = BatchSizes()
    settings = RuntimeSettings(instance_id="linger", group_id=f"{topics.prefix}-linger", max_batch_records=6,
                               linger_ms=600_000, session_timeout_ms=6_000)
    runtime = ProcessorRuntime(CounterDecider(), counter_spec(), kafka, topics, settings, serde=counter_serde(),
                               observer=observer)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    commands = adds(12)
    try:
        for add in commands:
            produce(kafka, topics.name("commands"), [add])
        events = read_all(kafka, topics.name("events"), expect=12)
    finally:
        runtime.stop()
        thread.join(30)
    assert_exactly_once(events, commands)
    assert observer.sizes == [6, 6]
    # Each committed batch reports its broker round trips (send_offsets, commit), a part of its time.
    assert len(observer.commits) == 2
    assert all(0 < commit <= total for commit, total in zip(observer.commits, observer.seconds, strict=True))


@pytest.mark.parametrize("lost_reply", [False, True], ids=["not-committed", "reply-lost"])
def test_a_failed_commit_puts_back_exactly_what_did_not_commit(
        counter: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lost_reply: bool) -> None:
    """A failed batch's state changes are undone in memory when its offsets did not
    commit, and kept when they did (the commit's reply was lost): either way every
    command is applied once and the totals continue from what the log holds."""
    kafka, topics = counter["kafka"], counter["topics"]
    flaky = type("Flaky", (FailingCommits,), {"lost_reply": lost_reply, "calls": 0, "failures": 0})
    monkeypatch.setattr(runtime_clients, "TransactionalProducer", flaky)
    commands = adds(1_500)
    run_exactly_once(kafka, topics, "flaky", commands, per_second=1_000.0)
    assert flaky.failures >= 3, flaky.failures


def run_exactly_once(kafka: dict[str, Any], topics: Topics, instance: str, commands: list[Add],
                     per_second: float) -> None:
    """``commands`` through a runtime on a thread; every one applied once, totals exact."""
    settings = RuntimeSettings(instance_id=instance, group_id=f"{topics.prefix}-{instance}", max_batch_records=50,
                               tick_grace_after_failure_ms=0)
    runtime = ProcessorRuntime(CounterDecider(), counter_spec(), kafka, topics, settings, serde=counter_serde())
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        produce(kafka, topics.name("commands"), commands, per_second=per_second)
        events = read_all(kafka, topics.name("events"), expect=len(commands), timeout_s=90)
    finally:
        runtime.stop()
        thread.join(30)
    assert_exactly_once(events, commands)
    states = final_states(kafka, topics.name("changelog"))
    assert {key: s.total for key, s in states.items()} == expected_totals(commands)


class StuckOffsets(Consumer):
    """The first consumer made answers no committed() (the wedge after a broker restart)."""

    made = 0

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        type(self).made += 1
        self.stuck = type(self).made == 1

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        if self.stuck:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected: no committed offsets"))
        return super().committed(partitions, timeout)


def test_a_consumer_that_cannot_read_its_offsets_is_replaced(
        counter: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failed batch the rewind needs committed(); when that keeps failing while the
    broker answers, the runtime stores the group's stable offsets again (twice), then makes
    a new consumer (its partitions restored from the changelog); every command is still
    applied once."""
    kafka, topics = counter["kafka"], counter["topics"]
    flaky = type("Flaky", (FailingCommits,), {"every": 10, "calls": 0, "failures": 0})
    stuck = type("Stuck", (StuckOffsets,), {"made": 0})
    monkeypatch.setattr(runtime_clients, "TransactionalProducer", flaky)
    monkeypatch.setattr(kafka_clients, "Consumer", stuck)
    run_exactly_once(kafka, topics, "stuck", adds(600), per_second=600.0)
    assert stuck.made >= 2 and flaky.failures >= 1, (stuck.made, flaky.failures)


class PendingOffsets(Consumer):
    """Once ``wedged``: the group holds a pending offset commit nothing completes (seen
    after broker restarts). The runtime's read_committed consumers then get no records
    and committed() times out, without any error; a read_uncommitted reader still reads
    the stable offsets. A new producer's sweep ends it (the test wraps settle_orphans)."""

    wedged = False

    def _stuck(self) -> bool:
        return type(self).wedged and self.reads_committed

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.reads_committed = config.get("isolation.level") == "read_committed"

    def poll(self, timeout: float | None = None) -> Any:
        if self._stuck():
            time.sleep(0.1 if timeout is None or timeout < 0 else min(timeout, 0.1))
            return None
        return super().poll(-1 if timeout is None else timeout)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        if self._stuck():
            time.sleep(0.1 if timeout < 0 else min(timeout, 0.1))
            return []
        return super().consume(num_messages, timeout)

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        if self._stuck():
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected: offset commit pending"))
        return super().committed(partitions, timeout)


def test_an_idle_processor_whose_offsets_stay_pending_repairs_them(
        counter: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker-restart wedge: no failed transaction, just a consumer that never gets
    positions while input waits. The idle runtime notices that committed() fails with
    the broker answering and makes a new producer, whose sweep (streams/sweep.py) finds
    the group's offsets pending and aborts the commit that holds them (here the wedge
    ends when that sweep has run: tests/streams/test_dropped_markers.py shows the real
    one on a broker), and every command is applied once."""
    kafka, topics = counter["kafka"], counter["topics"]
    pending = type("Pending", (PendingOffsets,), {"wedged": False})
    real_settle = runtime_clients.settle_orphans
    repairs = {"n": 0}

    def sweeping(*args: Any, **kwargs: Any) -> bool:
        swept = real_settle(*args, **kwargs)
        if swept and pending.wedged:
            pending.wedged = False
            repairs["n"] += 1
        return swept

    monkeypatch.setattr(kafka_clients, "Consumer", pending)
    monkeypatch.setattr(runtime_clients, "settle_orphans", sweeping)
    settings = RuntimeSettings(instance_id="pending", group_id=f"{topics.prefix}-pending", max_batch_records=50)
    runtime = ProcessorRuntime(CounterDecider(), counter_spec(), kafka, topics, settings, serde=counter_serde())
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    first, then = adds(200), adds(200, start=200)
    try:
        produce(kafka, topics.name("commands"), first)
        assert len(read_all(kafka, topics.name("events"), expect=len(first), timeout_s=60)) >= len(first)
        pending.wedged = True
        produce(kafka, topics.name("commands"), then)
        events = read_all(kafka, topics.name("events"), expect=len(first) + len(then), timeout_s=60)
    finally:
        runtime.stop()
        thread.join(30)
    assert_exactly_once(events, first + then)
    assert repairs["n"] == 1, repairs


def test_a_restore_that_fails_on_assignment_is_retried_not_fatal(
        counter: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker went away while a newly assigned partition was read from its changelog
    (seen in a chaos run: the orchestrator exited). The runtime keeps running, restores
    before its next batch and applies every command once."""
    kafka, topics = counter["kafka"], counter["topics"]
    real = restore_module.read_to_end
    calls = {"n": 0}

    def broker_gone_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "injected: broker went away mid-restore"))
        return real(*args, **kwargs)

    monkeypatch.setattr(restore_module, "read_to_end", broker_gone_once)
    run_exactly_once(kafka, topics, "restore", adds(300), per_second=300.0)
    assert calls["n"] >= 2, calls
