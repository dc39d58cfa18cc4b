"""A global table: the latest value per key of a compacted topic, kept current by a
background reader over every partition (``breakers`` for workers, ``systems`` for
clients). Reads are dict lookups; nothing here blocks the caller's hot path."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import SerdeError, StreamsError
from taskplane.streams.serde import Serde

log = logging.getLogger(__name__)


class GlobalTable:
    def __init__(self, kafka_config: dict[str, Any], topic: str, serde: Serde | None = None) -> None:
        self._topic = topic
        self._serde = serde or Serde()
        self._values: dict[str, Any] = {}
        self._lock = threading.Condition()  # notified after each update
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        # The group never commits: every reader starts from the beginning.
        # Fetches held 2 s (kafka_clients.FOLLOWING): a table changes rarely and is
        # caught up by positions, not EOF (below).
        self._consumer = kafka_clients.consumer(kafka_config, f"table-{topic}", start="earliest", eof=True,
                                                tuning=kafka_clients.FOLLOWING)
        # Asked through the consumer itself: with the leader in its metadata cache the
        # first offset query goes out at once (assigned without it, librdkafka retries
        # the query on a 500 ms timer: every table took >= 0.5 s to catch up).
        metadata = self._consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            self._consumer.close()
            raise StreamsError(f"topic {topic} does not exist (run `taskplane topics create`)")
        # Caught up once each partition's position reaches the end it had now (its last
        # stable offset: the reader is read_committed), or it reports EOF. The position
        # tells at once; EOF only comes from an empty fetch, which the broker holds for
        # fetch.wait.max.ms (2 s here). A partition whose end cannot be read now (a topic
        # just created may have no leader yet) waits for its EOF.
        self._ends: dict[int, int] = {}
        self._pending: set[int] = set()
        for partition in metadata.partitions:
            try:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            except KafkaException as error:
                log.info("table %s: end of partition %d unknown (%s); waiting for its EOF", topic, partition, error)
                self._pending.add(partition)
                continue
            if high > low:
                self._ends[partition] = high
                self._pending.add(partition)
        if not self._pending:
            self._caught_up.set()
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        self._thread = threading.Thread(target=self._read, name=f"table-{topic}", daemon=True)
        self._thread.start()

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._values.get(key, default)

    def wait_for(self, key: str, timeout_s: float) -> Any:
        """The value of ``key``, waiting up to ``timeout_s`` for it to appear; None then."""
        with self._lock:
            self._lock.wait_for(lambda: key in self._values or self._stop.is_set(), timeout_s)
            return self._values.get(key)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def wait_until_caught_up(self, timeout_s: float = 30.0) -> None:
        """Block until every partition was read to its end once."""
        if not self._caught_up.wait(timeout_s):
            raise StreamsError(f"table {self._topic} not caught up after {timeout_s}s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> GlobalTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reached_ends(self) -> None:
        known = [TopicPartition(self._topic, p) for p in self._pending if p in self._ends]
        if known:
            self._pending -= {tp.partition for tp in self._consumer.position(known)
                              if tp.offset >= self._ends[tp.partition]}
        if not self._pending:
            self._caught_up.set()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                for record in self._consumer.consume(1_000, 0) or self._consumer.consume(1, 0.2):
                    error = record.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            self._pending.discard(record.partition())
                            if not self._pending:
                                self._caught_up.set()
                        else:
                            log.warning("table %s: %s", self._topic, error)
                        continue
                    key = (record.key() or b"").decode(errors="replace")  # garbage must not stop the table
                    value = record.value()
                    try:
                        decoded = None if value is None else self._serde.decode(value)[1]
                    except SerdeError as decode_error:
                        log.warning("table %s: skipping undecodable record for %r: %s", self._topic, key, decode_error)
                        continue
                    with self._lock:
                        if decoded is None:
                            self._values.pop(key, None)
                        else:
                            self._values[key] = decoded
                        self._lock.notify_all()
                if self._pending:
                    self._reached_ends()
        except Exception:  # the table must not die silently: log, and stop serving as caught-up
            log.exception("table %s reader stopped", self._topic)
            time.sleep(0.1)
        finally:
            self._consumer.close()
