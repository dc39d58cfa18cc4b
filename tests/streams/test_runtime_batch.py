"""A batch's records, in process (no broker): what the runtime applies and commits."""

from __future__ import annotations

from typing import Any

from bench.counter.app import counter_serde, counter_spec
from bench.counter.decider import CounterDecider
from taskplane.streams.runtime import ProcessorRuntime, _Partition
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics


class _Record:
    """What ``_process`` reads of a confluent_kafka.Message."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        raise AssertionError("a record of a partition not owned must not be decoded")


def test_records_of_a_partition_revoked_while_the_batch_was_polled_are_left_to_its_next_owner() -> None:
    """A batch is polled in several consume calls and a rebalance callback can run in any
    of them: records fetched before a revocation arrive for a partition whose state is
    gone. They are not applied and their offsets are not committed (bench.failover's
    breaker died on 'partition 0 of ... is not assigned' before)."""
    runtime: ProcessorRuntime[Any, Any, Any] = ProcessorRuntime(
        CounterDecider(), counter_spec(), {"bootstrap.servers": "127.0.0.1:1"}, Topics("unit"),
        RuntimeSettings(instance_id="unit"), serde=counter_serde())
    runtime._partitions = {1: _Partition()}
    offsets: dict[int, int] = {}
    runtime._process([_Record(0, 7), _Record(0, 8)], offsets)  # type: ignore[list-item]
    assert offsets == {}
    assert runtime._partitions[1].first_offset is None
