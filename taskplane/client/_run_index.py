"""A client's reader of the ``runs`` index: the latest ``RunRecord`` of a run id.

A partition of ``runs`` is read the first time a run on it is looked up, then kept:
each later lookup reads only what was written since (one offset query and the new
records), so a long-lived client answers in about a millisecond whatever the size of
the log, and a one-shot lookup (``taskplane result RUN``) reads one partition of the
compacted index, one record per run, never the ``events`` topic. Values are kept as
bytes and decoded when asked for.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from taskplane.contract.messages import RunRecord
from taskplane.exceptions import ClientError
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.log_reader import TO_THE_END
from taskplane.streams.partitioning import partition_for
from taskplane.streams.serde import Serde

_TIMEOUT_S = 30.0


class RunIndex:
    def __init__(self, kafka_config: dict[str, Any], topic: str, partitions: int, serde: Serde) -> None:
        self._topic, self._partitions, self._serde = topic, partitions, serde
        self._consumer = kafka_clients.consumer(kafka_config, f"taskplane-client-index-{uuid.uuid4().hex[:12]}",
                                                eof=True, tuning=TO_THE_END)
        self._values: dict[bytes, bytes] = {}
        self._assigned: set[int] = set()
        self._lock = threading.Lock()  # one reader of the consumer at a time

    def lookup(self, run_id: str) -> RunRecord | None:
        """The run's record as of now (everything committed before the call), or None."""
        partition = partition_for(run_id, self._partitions)
        with self._lock:
            try:
                self._catch_up(partition)
            except KafkaException as error:
                raise ClientError(f"cannot read {self._topic}: {error}") from error
            raw = self._values.get(run_id.encode())
        if raw is None:
            return None
        try:
            record = self._serde.decode(raw)[1]
        except SerdeError as error:
            raise ClientError(f"run {run_id}: undecodable record on {self._topic}: {error}") from error
        return record if isinstance(record, RunRecord) else None

    def close(self) -> None:
        with self._lock:
            self._consumer.close()

    def _catch_up(self, partition: int) -> None:
        """Read ``partition`` up to its last stable offset as it is now (a read_committed
        consumer's watermark query answers the LSO). Paused in between: an idle client
        sends no fetches."""
        tp = TopicPartition(self._topic, partition)
        _low, end = self._consumer.get_watermark_offsets(tp, timeout=_TIMEOUT_S, cached=False)
        if partition not in self._assigned:
            self._consumer.incremental_assign([TopicPartition(self._topic, partition, OFFSET_BEGINNING)])
            self._assigned.add(partition)
        else:
            self._consumer.resume([tp])
        try:
            self._read_to(tp, end)
        finally:
            self._consumer.pause([tp])

    def _read_to(self, tp: TopicPartition, end: int) -> None:
        partition = tp.partition
        deadline = time.monotonic() + _TIMEOUT_S
        while self._position(tp) < end:
            if time.monotonic() > deadline:
                raise ClientError(f"reading {self._topic}[{partition}] took over {_TIMEOUT_S:.0f}s")
            for record in self._consumer.consume(10_000, 0) or self._consumer.consume(1, 0.1):
                error = record.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        # At the end (the position may lag behind a last transaction
                        # marker); an EOF from before ``end`` is an old one.
                        if record.partition() == partition and record.offset() >= end:
                            return
                        continue
                    raise KafkaException(error)
                key = record.key()
                if key is None:
                    continue
                value = record.value()
                if value is None:
                    self._values.pop(key, None)
                else:
                    self._values[key] = value

    def _position(self, tp: TopicPartition) -> int:
        [position] = self._consumer.position([tp])
        return position.offset if position.offset >= 0 else -1
