"""Time for deciders without wall-clock callbacks: when the clock passes a partition's
earliest timer, a ``Tick`` is produced to that input partition inside a transaction;
consumed, it decides every key due by its ``now_ms`` (docs/runtime.md, "Time")."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Producer

from taskplane.streams.partition_state import PartitionState
from taskplane.streams.serde import SCHEMA_VERSION, Meta, Serde


class Ticker:
    def __init__(self, name: str, tick: Any, input_topic: str, serde: Serde, interval_ms: int) -> None:
        self._name = name
        self._tick = tick  # decider.tick: now_ms -> the Tick command
        self._input = input_topic
        self._serde = serde
        self._interval_ms = interval_ms
        self._last_check = 0.0
        self._held_until = 0.0

    def hold(self, seconds: float) -> None:
        """No Ticks for ``seconds``. After an outage the clock ran on: a Tick now would
        expire leases whose renewals sit in the clients' queues, sent on time."""
        self._held_until = time.monotonic() + seconds

    def due(self, partitions: dict[int, PartitionState[Any]]) -> list[tuple[int, int]]:
        """Partitions whose earliest timer has passed, with the time to tick them at."""
        now = time.time()
        if (now - self._last_check) * 1000 < self._interval_ms:
            return []
        if time.monotonic() < self._held_until:
            return []
        self._last_check = now
        now_ms = int(now * 1000)
        due = []
        for partition, owned in partitions.items():
            earliest = owned.earliest()
            if earliest is not None and earliest <= now_ms:
                due.append((partition, now_ms))
        return due

    def wait_s(self, partitions: dict[int, PartitionState[Any]]) -> float | None:
        """Seconds until ``due`` could return a partition (0 when it could now); None when
        no partition has a timer, so an idle loop may wait for records alone."""
        earliest = min((t for t in (owned.earliest() for owned in partitions.values()) if t is not None),
                       default=None)
        if earliest is None:
            return None
        now = time.time()
        at = max(earliest / 1000, self._last_check + self._interval_ms / 1000,
                 now + self._held_until - time.monotonic())
        return max(0.0, at - now)

    def produce(self, producer: Producer, ticks: list[tuple[int, int]]) -> None:
        for partition, now_ms in ticks:
            command = self._tick(now_ms)
            meta = Meta(
                message_id=f"tick/{self._name}/{partition}/{now_ms}",
                key="",
                type=type(command).__name__,
                schema_version=SCHEMA_VERSION,  # the release writers follow, as for events
                causation_id=None,
                correlation_id=None,
                timestamp_ms=now_ms,
            )
            producer.produce(self._input, self._serde.encode(command, meta), b"", partition, timestamp=now_ms)
