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
        consumer.close()
