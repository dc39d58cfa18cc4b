"""Kafka transaction semantics the processor runtime relies on, on the real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

pytestmark = pytest.mark.kafka

Config = dict[str, object]


def _consumer(config: Config, group: str, **extra: object) -> Consumer:
    return Consumer(
        {
            **config,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **extra,
        }
    )


def _drain(
    consumer: Consumer, want: int, timeout: float = 20.0, idle: float = 0.0
) -> list[Message]:
    """Poll until ``want`` records arrived (then ``idle`` more seconds) or ``timeout``."""
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            raise KafkaException(message.error())
        records.append(message)
        if len(records) >= want:
            deadline = min(deadline, time.monotonic() + idle)
    return records


def _transactional_producer(config: Config, unique_prefix: str) -> Producer:
    producer = Producer({**config, "transactional.id": f"{unique_prefix}-{uuid.uuid4().hex[:6]}"})
    producer.init_transactions(30)
    return producer


def test_consume_transform_produce_commits_output_and_offsets_together(
    kafka_config: Config, topic_factory: Callable[..., str], unique_prefix: str
) -> None:
    source, sink = topic_factory("commands"), topic_factory("events")
    seed = Producer(dict(kafka_config))
    for index in range(3):
        seed.produce(source, key=b"run-1", value=f"command-{index}".encode())
    seed.flush(10)

    group = f"{unique_prefix}-processor"
    consumer = _consumer(kafka_config, group)
    consumer.subscribe([source])
    inputs = _drain(consumer, 3)
    assert len(inputs) == 3

    producer = _transactional_producer(kafka_config, unique_prefix)
    producer.begin_transaction()
    for record in inputs:
        producer.produce(sink, key=record.key(), value=b"event-of-" + (record.value() or b""))
    last = inputs[-1]
    offsets = [TopicPartition(source, last.partition(), (last.offset() or 0) + 1)]
    producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
    consumer.close()

    reader = _consumer(kafka_config, f"{unique_prefix}-reader")
    reader.subscribe([sink])
    values = [record.value() for record in _drain(reader, 3, idle=1.0)]
    reader.close()
    assert values == [b"event-of-command-0", b"event-of-command-1", b"event-of-command-2"]

    committed = _consumer(kafka_config, group).committed([TopicPartition(source, 0)], timeout=10)
    assert committed[0].offset == 3


def test_aborted_transaction_is_never_seen_by_read_committed(
    kafka_config: Config, topic_factory: Callable[..., str], unique_prefix: str
) -> None:
    topic = topic_factory("events")
    producer = _transactional_producer(kafka_config, unique_prefix)
    producer.begin_transaction()
    producer.produce(topic, key=b"run-1", value=b"aborted")
    producer.flush(10)  # the records reach the log before the abort
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"run-1", value=b"committed")
    producer.commit_transaction(30)

    reader = _consumer(kafka_config, f"{unique_prefix}-reader")
    reader.subscribe([topic])
    values = [record.value() for record in _drain(reader, 1, idle=2.0)]
    reader.close()
    assert values == [b"committed"]

    uncommitted = _consumer(
        kafka_config, f"{unique_prefix}-dirty", **{"isolation.level": "read_uncommitted"}
    )
    uncommitted.subscribe([topic])
    dirty = [record.value() for record in _drain(uncommitted, 2, idle=1.0)]
    uncommitted.close()
    assert b"aborted" in dirty  # it was written, and only read_committed hides it


def test_consumer_group_resumes_from_committed_offsets(
    kafka_config: Config, topic_factory: Callable[..., str], unique_prefix: str
) -> None:
    topic = topic_factory("commands", partitions=2)
    producer = Producer(dict(kafka_config))
    for index in range(10):
        producer.produce(topic, key=f"run-{index}".encode(), value=str(index).encode())
    producer.flush(10)
    group = f"{unique_prefix}-group"

    first = _consumer(kafka_config, group)
    first.subscribe([topic])
    seen_first = _drain(first, 10)
    half = seen_first[:5]
    latest: dict[int, int] = {}
    for record in half:
        latest[record.partition()] = (record.offset() or 0) + 1
    first.commit(
        offsets=[TopicPartition(topic, part, offset) for part, offset in latest.items()],
        asynchronous=False,
    )
    first.close()

    second = _consumer(kafka_config, group)
    second.subscribe([topic])
    seen_second = _drain(second, 5, idle=1.0)
    second.close()

    first_values = {record.value() for record in half}
    second_values = {record.value() for record in seen_second}
    assert first_values | second_values == {str(index).encode() for index in range(10)}
    assert not first_values & second_values
