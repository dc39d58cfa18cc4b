"""Read a topic's committed records from the beginning to its current end: state
restore, rebuilds and equality checks all fold a log this way."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import AUTHORIZATION_FAILED, KafkaIOError, principal_of

# For a reader that stops at the end: the end shows as an empty fetch at the high
# watermark, which the broker holds for fetch.wait.max.ms (500 ms by default): every
# restore took >= 0.5 s whatever its size (200 records: 0.56-0.70 s, 0.07-0.10 s with this).
TO_THE_END = {"fetch.wait.max.ms": 10}


def read_to_end(
    kafka_config: dict[str, Any], topic: str, partitions: Iterable[int] | None = None, group_id: str = "taskplane-reader"
) -> Iterator[tuple[int, str, bytes | None]]:
    """(partition, key, value) of every committed record of ``topic`` (all partitions
    unless given), in offset order per partition, up to each partition's end at the
    time it is reached (the last stable offset: open transactions are not waited for).
    The group id is only a label: nothing is committed."""
    for record in read_messages_to_end(kafka_config, topic, partitions, group_id):
        key = record.key()
        yield record.partition(), (key.decode() if key else ""), record.value()


def read_messages_to_end(
    kafka_config: dict[str, Any], topic: str, partitions: Iterable[int] | None = None, group_id: str = "taskplane-reader"
) -> Iterator[Message]:
    """``read_to_end``'s records whole (offset and timestamp too)."""
    reader = kafka_clients.consumer(kafka_config, group_id, start="earliest", eof=True, tuning=TO_THE_END)
    try:
        try:
            pending = _partitions_with_records(reader, kafka_config, topic, partitions)
        except KafkaException as error:  # the broker away: one line for the CLI, not a traceback
            where = f"reading {topic} from {kafka_config.get('bootstrap.servers')}"
            raise KafkaIOError.wrap(error, where) from None
        if not pending:
            return
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        while pending:
            # What is fetched already, else a wait for the next record or end: consume(n, t)
            # alone waits out t unless n records come, and made every restore >= 1 s.
            for record in reader.consume(10_000, 0) or reader.consume(1, 1.0):
                error = record.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaIOError.wrap(error, f"reading {topic} as {principal_of(kafka_config)}")
                    pending.discard(record.partition())
                    continue
                yield record
    finally:
        reader.close()


def _partitions_with_records(reader: Any, kafka_config: dict[str, Any], topic: str,
                             partitions: Iterable[int] | None) -> set[int]:
    if partitions is None:
        metadata = reader.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None and metadata.error.code() in AUTHORIZATION_FAILED:
            # Refused by ACLs: never read as an empty topic (a missing one still is).
            raise KafkaIOError.wrap(metadata.error, f"reading {topic} as {principal_of(kafka_config)}")
        partitions = list(metadata.partitions)
    pending: set[int] = set()
    for partition in partitions:
        low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        if high > low:
            pending.add(partition)
    return pending
