"""Offset tools on the log: watermarks, a group's committed offsets and live members,
offsets by time, moving a stopped group's offsets, and reading a topic to its end.

The CLI's ``replay`` and ``rebuild``, the lag metrics and the runbook tests all use
these; Kafka's errors leave as ``KafkaIOError`` (``retryable`` from librdkafka).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import KafkaIOError
from taskplane.streams.log_reader import read_to_end

_GROUP = "taskplane-offset-tools"


def _reader(kafka_config: dict[str, Any]) -> Consumer:
    # Watermarks and offsets by time only: neither depends on the isolation level.
    return kafka_clients.consumer(kafka_config, _GROUP, committed_only=False)


def partitions_of(kafka_config: dict[str, Any], topic: str) -> list[int]:
    """The partition ids of ``topic``; empty when there is no such topic."""
    metadata = kafka_clients.admin(kafka_config).list_topics(topic, timeout=30).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        return []
    return sorted(metadata.partitions)


def watermarks(kafka_config: dict[str, Any], topic: str) -> dict[int, tuple[int, int]]:
    """(low, high) watermark per partition of ``topic``."""
    reader = _reader(kafka_config)
    try:
        return {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                for p in partitions_of(kafka_config, topic)}
    except KafkaException as error:
        raise KafkaIOError.wrap(error, f"watermarks of {topic}") from error
    finally:
        reader.close()


def committed_offsets(kafka_config: dict[str, Any], group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (absent: none committed)."""
    partitions = [TopicPartition(topic, p) for p in partitions_of(kafka_config, topic)]
    if not partitions:
        return {}
    admin = kafka_clients.admin(kafka_config)  # must outlive the future: a freed client never answers
    try:
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, partitions)],
                                                    request_timeout=5)
        result = futures[group].result(timeout=8)
    except KafkaException as error:
        raise KafkaIOError.wrap(error, f"committed offsets of {group}") from error
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def live_members(kafka_config: dict[str, Any], group: str) -> list[str]:
    """``client_id@host`` of each live member of ``group``."""
    admin = kafka_clients.admin(kafka_config)  # must outlive the future
    try:
        description = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=8)
    except KafkaException as error:
        raise KafkaIOError.wrap(error, f"cannot describe {group!r}") from error
    return [f"{m.client_id}@{m.host}" for m in description.members]


def offsets_for_time(kafka_config: dict[str, Any], topic: str, at_ms: int) -> dict[int, int]:
    """Per partition, the first offset at or after ``at_ms`` (the high watermark when
    every record is older)."""
    marks = watermarks(kafka_config, topic)
    reader = _reader(kafka_config)
    try:
        found = reader.offsets_for_times([TopicPartition(topic, p, at_ms) for p in marks], timeout=30)
    except KafkaException as error:
        raise KafkaIOError.wrap(error, f"offsets of {topic} at {at_ms}") from error
    finally:
        reader.close()
    return {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found}


def move_offsets(kafka_config: dict[str, Any], group: str, topic: str, offsets: dict[int, int]) -> None:
    """Set ``group``'s committed offsets on ``topic``; the broker refuses while the group
    has live members."""
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in offsets.items()])]
    admin = kafka_clients.admin(kafka_config)  # must outlive the future
    try:
        admin.alter_consumer_group_offsets(request)[group].result(30)
    except KafkaException as error:
        raise KafkaIOError.wrap(error, f"the broker refused the reset of {group!r}") from error


def read_all(kafka_config: dict[str, Any], topic: str) -> list[tuple[int, str, bytes | None]]:
    """Every committed record of ``topic``, in partition order: (partition, key, value)."""
    return sorted(read_to_end(kafka_config, topic, group_id=_GROUP), key=lambda r: r[0])
