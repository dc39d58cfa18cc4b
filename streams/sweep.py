"""The sweep: a new transactional producer's first transaction, aborted on purpose, that
settles whatever an earlier transaction of its id left open on the partitions it writes.

Why (docs/failover.md, "Dropped commit markers"): a broker restarting while one of our
transactions is prepared to commit finishes that commit from its transaction log, but
its marker sender skips every partition that has no leader at that moment (it takes
them for deleted topics, KAFKA-5202). A single broker restarting within its KRaft
session does exactly that: it loads the transaction log, is fenced when its previous
incarnation's session ends, and its partitions are leaderless for a moment. The
coordinator then reports the transaction complete while its records and its offset
commit have no marker. Records without a marker stay open under the producer id: the
partition's last stable offset stops there (read_committed consumers wait), the group's
offsets are unreadable (a pending commit), and the producer id's *next* marker on that
partition decides them. Measured in a chaos run: the successor's commit marker made the
orphan's ``ToolCallSucceeded`` visible next to its own re-decision, one event twice.

The sweep writes one record to every partition the producer id may have written and to
the group's offsets, then aborts: the abort marker (markers are per producer id, not per
epoch) ends every orphan as aborted, together with its offset commit. What the orphan
decided is then decided again from the committed input (``recovery.Recoverer`` restores
a partition whose committed offset fell behind what this instance had committed). The
records are aborted, so no read_committed reader sees them; compaction drops them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from taskplane.streams import kafka_clients

log = logging.getLogger(__name__)

SWEEP_KEY = b"taskplane.sweep"  # compacted topics refuse records without a key


def sweep(producer: Producer, partitions: Iterable[tuple[str, int]], offsets: list[TopicPartition],
          group_metadata: Any, timeout_s: float) -> int:
    """One aborted transaction through ``producer`` (initialised, between transactions)
    over ``partitions`` (topic, partition) and, when ``offsets`` is not empty, the
    group's offsets partition (``group_metadata``: the consumer's). Returns how many
    partitions it touched. A failure is raised: the producer is then unusable for a
    transaction until aborted, so the caller makes a new one."""
    touched = sorted(set(partitions))
    producer.begin_transaction()
    for topic, partition in touched:
        producer.produce(topic, b"", SWEEP_KEY, partition)
    if offsets:
        try:
            # Adds the group's offsets partition to the transaction (AddOffsetsToTxn) before
            # the offset commit itself, which may be refused (a member not yet in the group):
            # the abort's marker reaches that partition either way.
            producer.send_offsets_to_transaction(offsets, group_metadata, timeout_s)
        except KafkaException as error:
            kafka_error = error.args[0] if error.args else None
            if kafka_error is None or not kafka_error.txn_requires_abort():
                raise
            log.info("sweep: the offsets were refused (%s); aborting as planned", kafka_error)
    remaining = producer.flush(timeout_s)
    if remaining:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"sweep: {remaining} records not sent in {timeout_s:.1f}s"))
    producer.abort_transaction(timeout_s)
    return len(touched)


# How long committed() may take before the group's offsets count as pending: answered in
# milliseconds otherwise (the rewind's bound, streams/recovery.py).
PENDING_PROBE_S = 1.5


def offsets_pending(kafka_config: dict[str, Any], group_id: str, input_topic: str, partitions: list[int],
                    timeout_s: float = PENDING_PROBE_S) -> bool:
    """Whether the group's committed offsets on ``input_topic`` are unreadable as stable
    (a transactional offset commit without its marker), asked by a fresh client that
    does not join the group."""
    reader = kafka_clients.consumer(kafka_config, group_id)
    try:
        reader.committed([TopicPartition(input_topic, p) for p in partitions], timeout_s)
    except KafkaException:
        return True
    finally:
        reader.close()
    return False


def settle_orphans(producer: Producer, kafka_config: dict[str, Any], group_id: str, input_topic: str,
                   topics: list[str], group_metadata: Callable[[], Any], timeout_s: float) -> bool:
    """A new producer's check: when the group's offsets are pending, the sweep over every
    partition of ``topics`` (the ones that exist) and the group's offsets. True when it
    swept: what this instance took as committed may have been aborted."""
    metadata = producer.list_topics(timeout=timeout_s)
    found = metadata.topics.get(input_topic)
    inputs = sorted(found.partitions) if found is not None and found.error is None else []
    if not inputs or not offsets_pending(kafka_config, group_id, input_topic, inputs):
        return False
    partitions = [(name, p) for name in topics if (topic := metadata.topics.get(name)) is not None
                  and topic.error is None for p in topic.partitions]
    # The offset is never stored (the transaction aborts): it only brings the group's
    # offsets partition into the transaction.
    touched = sweep(producer, partitions, [TopicPartition(input_topic, inputs[0], 0)], group_metadata(), timeout_s)
    log.warning("group %s: offsets pending without a marker; swept %d partitions and the group's offsets "
                "(an abort settles what this producer id left open)", group_id, touched)
    return True
