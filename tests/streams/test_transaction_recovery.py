"""The transactional producer's recovery on the real broker: an abort that times out is
resumed on the same producer, and a slow call brings fresh metadata (streams/transactions.py,
streams/metadata_nudge.py; why: docs/failover.md "Three brokers")."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from taskplane.streams.metadata_nudge import INTERVAL_S, REQUEST_TIMEOUT_S, TAIL_S, MetadataNudge
from taskplane.streams.transactions import Recovery, TransactionalProducer

pytestmark = pytest.mark.kafka


class AbortTimesOut(Producer):
    """abort_transaction times out ``times`` times first, as while its coordinator's node
    is dead ("retry call to resume"), then aborts."""

    times = 2

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.aborts = 0

    def abort_transaction(self, *args: Any) -> None:
        self.aborts += 1
        if self.aborts <= self.times:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected: retry call to resume", retriable=True))
        super().abort_transaction(*args)


def test_a_timed_out_abort_is_resumed_on_the_same_producer(
        kafka_config: dict[str, Any], topic_factory: Callable[..., str]) -> None:
    """No new producer after an abort that timed out: its init_transactions would wait
    while the coordinator aborts the old transaction (CONCURRENT_TRANSACTIONS). The
    resumed abort leaves the producer usable: the next transaction commits on it."""
    topic = topic_factory("events")
    config = {**kafka_config, "transactional.id": f"resume-{uuid.uuid4().hex[:6]}"}
    transactions = TransactionalProducer("resume", lambda _lane: AbortTimesOut(config), 5.0, threading.Event())
    first = transactions.producer
    assert isinstance(first, AbortTimesOut)
    transactions.begin()
    first.produce(topic, b"aborted", b"k")
    recovery = transactions.recover(KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected", retriable=True)))
    assert recovery is Recovery.ABORT
    assert transactions.producer is first and first.aborts == 3
    transactions.begin()
    first.produce(topic, b"committed", b"k")
    assert transactions.commit([], None) == 0.0
    transactions.close()


def test_a_nudge_asks_for_metadata_through_the_producer_then_stops(kafka_config: dict[str, Any]) -> None:
    """Requests while pokes come (a slow call), none once the tail after the last is over."""
    producer = Producer(dict(kafka_config))
    nudge = MetadataNudge("nudge", lambda: producer)
    nudge.poke()
    deadline = time.monotonic() + 60
    while nudge.requests < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert nudge.requests >= 2
    time.sleep(TAIL_S + REQUEST_TIMEOUT_S + 1)  # past the tail, and a round in flight at its end
    asked = nudge.requests
    time.sleep(1)
    assert nudge.requests == asked
    # close() ends the helper thread: it held the producer (in a processor, its whole
    # ProcessorClients) for the process's life, past the broker in a test session.
    thread = nudge._thread
    assert thread is not None and thread.is_alive()
    nudge.close()
    thread.join(5)
    assert not thread.is_alive()
    nudge.poke()  # closed: no thread again
    assert nudge._thread is thread and not nudge.nudging


class CountedConsumer(Consumer):
    """A consumer that counts its metadata requests and the threads they came from."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.asked_from: list[str] = []

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        self.asked_from.append(threading.current_thread().name)
        return super().list_topics(*args, **kwargs)


def test_a_consumer_is_nudged_on_its_polling_thread_only_while_nudging(kafka_config: dict[str, Any]) -> None:
    """confluent-kafka serialises a consumer's calls: a list_topics from the nudge's thread
    spun (1 ms sleeps) while the owner polled back to back. The consumer's requests come
    from on_loop, on the polling thread, at most every INTERVAL_S, and none outside a nudge."""
    consumer = CountedConsumer({**kafka_config, "group.id": f"nudge-{uuid.uuid4().hex[:6]}"})
    producer = Producer(dict(kafka_config))
    nudge = MetadataNudge("nudge", lambda: producer)
    try:
        nudge.on_loop(consumer)
        assert consumer.asked_from == []  # not nudging: nothing asked
        nudge.poke()
        started = time.monotonic()
        while time.monotonic() - started < TAIL_S / 2:
            nudge.on_loop(consumer)
            consumer.poll(0.01)
        assert consumer.asked_from and set(consumer.asked_from) == {threading.current_thread().name}
        assert len(consumer.asked_from) <= TAIL_S / 2 / INTERVAL_S + 1  # one per interval, not per poll
        time.sleep(TAIL_S + REQUEST_TIMEOUT_S)
        asked = len(consumer.asked_from)
        nudge.on_loop(consumer)
        assert len(consumer.asked_from) == asked  # the tail is over
    finally:
        nudge.close()
        consumer.close()


class Journaled(Producer):
    """A producer that writes its init_transactions into a shared journal."""

    def __init__(self, config: dict[str, Any], journal: list[str]) -> None:
        super().__init__(config)
        self._id, self._journal = config["transactional.id"], journal

    def init_transactions(self, *args: Any) -> None:
        super().init_transactions(*args)
        self._journal.append(f"init {self._id}")


def _read_committed(kafka_config: dict[str, Any], topic: str, expect: int, timeout_s: float) -> list[bytes]:
    """The values a read_committed reader gets from ``topic`` within ``timeout_s``, up to ``expect``."""
    consumer = Consumer({**kafka_config, "group.id": f"lanes-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expect and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                values.append(message.value())
    finally:
        consumer.close()
    return values


def test_lanes_take_turns_and_a_restart_aborts_what_any_lane_left_open(
        kafka_config: dict[str, Any], topic_factory: Callable[..., str]) -> None:
    """Two lanes: each commit hands the next transaction to the other producer (its own
    transactional id), and a restart initialises every lane before any sweep: a
    transaction a killed instance left open on its second id is aborted at once, not
    after the transaction timeout (60 s here; the reader waits 15 s)."""
    topic = topic_factory("lanes")
    base = f"lanes-{uuid.uuid4().hex[:6]}"
    journal: list[str] = []

    def make(lane: int) -> Producer:
        tid = base + (f".{lane}" if lane else "")
        return Journaled({**kafka_config, "transactional.id": tid, "transaction.timeout.ms": 60_000}, journal)

    def settle(producer: Producer) -> bool:
        journal.append("settle")
        return False

    transactions = TransactionalProducer("lanes", make, 5.0, threading.Event(), settle=settle, lanes=2)
    assert journal == [f"init {base}", f"init {base}.1", "settle", "settle"]
    used = []
    for n in range(3):
        used.append(transactions.producer)
        transactions.begin()
        transactions.producer.produce(topic, f"committed {n}".encode(), b"k")
        transactions.commit([], None)
    assert used[0] is used[2] and used[1] is not used[0]
    transactions.begin()  # on lane 1; the instance dies before its commit
    transactions.producer.produce(topic, b"left open", b"k")
    transactions.producer.flush(5)
    journal.clear()
    restarted = TransactionalProducer("lanes", make, 5.0, threading.Event(), settle=settle, lanes=2)
    transactions.close()  # the dead instance's handles (fenced now), not left for the interpreter's exit
    assert journal == [f"init {base}", f"init {base}.1", "settle", "settle"]
    restarted.begin()
    restarted.producer.produce(topic, b"after the restart", b"k")
    restarted.commit([], None)
    values = _read_committed(kafka_config, topic, 4, 15.0)
    assert values == [b"committed 0", b"committed 1", b"committed 2", b"after the restart"]
    restarted.close()
