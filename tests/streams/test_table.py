"""GlobalTable on the real broker: caught up means every committed value is there, an
open transaction is not waited for, and later values keep arriving."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from taskplane.contract.breaker import BreakerState, BreakerStatus
from taskplane.streams import kafka_clients
from taskplane.streams.runtime import state_meta
from taskplane.streams.serde import Serde
from taskplane.streams.table import GlobalTable

pytestmark = pytest.mark.kafka

Config = dict[str, object]
COMPACT = {"cleanup.policy": "compact"}


def _state(tool: str, failures: int) -> bytes:
    return Serde().encode(BreakerState(tool, BreakerStatus.CLOSED, failures, 5, 60_000), state_meta(tool))


def _transactional(config: Config) -> Producer:
    producer = Producer({**config, "transactional.id": f"table-test-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)
    return producer


def _failures(table: GlobalTable, key: str) -> int | None:
    value = table.get(key)
    return None if value is None else value.consecutive_failures


def test_caught_up_holds_every_committed_value_past_commit_markers(
    kafka_config: Config, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("table", partitions=3, config=COMPACT)  # partitions 1-2 stay empty or not
    producer = _transactional(kafka_config)
    for index in range(20):  # one transaction each: a commit marker after every record
        producer.begin_transaction()
        producer.produce(topic, _state(f"tool{index % 4}", index), f"tool{index % 4}", partition=index % 2)
        producer.commit_transaction(30)
    with GlobalTable(kafka_config, topic) as table:
        table.wait_until_caught_up(10)
        assert {key: _failures(table, key) for key in ("tool0", "tool1", "tool2", "tool3")} == {
            "tool0": 16, "tool1": 17, "tool2": 18, "tool3": 19}


def test_an_empty_topic_is_caught_up_at_once_and_later_values_arrive(
    kafka_config: Config, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("table", partitions=2, config=COMPACT)
    with GlobalTable(kafka_config, topic) as table:
        table.wait_until_caught_up(0.5)  # nothing to read: no fetch is waited for
        producer = _transactional(kafka_config)
        producer.begin_transaction()
        producer.produce(topic, _state("late", 3), "late")
        producer.commit_transaction(30)
        assert table.wait_for("late", 10) is not None
        assert _failures(table, "late") == 3


def test_an_open_transaction_is_not_waited_for_nor_shown(
    kafka_config: Config, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("table", config=COMPACT)
    committed = _transactional(kafka_config)
    committed.begin_transaction()
    committed.produce(topic, _state("done", 1), "done")
    committed.commit_transaction(30)
    hanging = _transactional(kafka_config)
    hanging.begin_transaction()
    hanging.produce(topic, _state("open", 2), "open")
    hanging.flush(30)  # on the log, not committed
    with GlobalTable(kafka_config, topic) as table:
        table.wait_until_caught_up(10)  # at the last stable offset (EOF), not the high watermark
        assert _failures(table, "done") == 1
        assert table.get("open") is None
        hanging.commit_transaction(30)
        assert table.wait_for("open", 10) is not None


class NoLeaderYet(Consumer):
    """A topic created a moment ago: its partitions' ends cannot be read yet."""

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION, "injected: no leader yet"))


def test_a_partition_whose_end_is_unknown_is_caught_up_at_its_eof(
    kafka_config: Config, topic_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = topic_factory("table", partitions=2, config=COMPACT)
    producer = _transactional(kafka_config)
    producer.begin_transaction()
    producer.produce(topic, _state("tool", 7), "tool", partition=1)
    producer.commit_transaction(30)
    monkeypatch.setattr(kafka_clients, "Consumer", NoLeaderYet)
    with GlobalTable(kafka_config, topic) as table:
        table.wait_until_caught_up(10)
        assert _failures(table, "tool") == 7
