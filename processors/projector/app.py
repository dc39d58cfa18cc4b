"""The projector: ``events`` and ``breakers`` → the Postgres read model. Started by
``taskplane processor run projector`` (``taskplane/processes.py``).

Reads ``read_committed`` in a consumer group (for liveness and lag tooling) but never
trusts Kafka offsets: on assignment it seeks to the offsets stored in Postgres, and
each batch stores its rows and next offsets in one Postgres transaction. The Kafka
group offsets are committed after that, for information only (lag dashboards).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from contextlib import closing
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import CollectorRegistry
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskplane.processors.projector.prune import prune_finished_runs
from taskplane.processors.projector.schema import LIVE_SCHEMA, connect, migrate
from taskplane.processors.projector.store import ReadModelStore
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import KafkaIOError, StreamsError
from taskplane.streams.plan_source import SystemsPlans
from taskplane.streams.poison import poison_headers
from taskplane.streams.topics import Topics

log = logging.getLogger(__name__)
SOURCES = ("events", "breakers")


class ProjectorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPLANE_PROJECTOR_", extra="ignore")

    schema_name: str = Field(default=LIVE_SCHEMA, description="Postgres schema of the live read model.")
    max_batch_records: int = Field(default=2_000, ge=1)
    max_batch_ms: int = Field(default=200, ge=1)
    instance_id: str = Field(default_factory=socket.gethostname,
                             description="Static group membership: a restarted pod takes its partitions back at once.")
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    prune_finished_after_ms: int | None = Field(
        default=None, ge=0, description="Delete finished runs this long after they finished (None: keep all).")
    prune_interval_ms: int = Field(default=600_000, ge=1_000, description="How often the pruning runs.")
    prune_batch_size: int = Field(default=500, ge=1, description="Runs deleted per short transaction.")


class _ConsumerLost(StreamsError):
    """The consumer hit a fatal error (it is unusable); the projector opens a new one."""

    retryable = True


def group_id(topics: Topics) -> str:
    return f"{topics.prefix}.projector"


class Projector:
    def __init__(
        self,
        kafka_config: dict[str, Any],
        topics: Topics,
        database_url: str,
        settings: ProjectorSettings | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._kafka = dict(kafka_config)
        self._topics = topics
        self._dsn = database_url
        self._settings = settings or ProjectorSettings()
        self._sources = [topics.name(role) for role in SOURCES]
        self._stop = threading.Event()
        self._registry = registry
        self.batches = 0
        self._poison_producer: Producer | None = None
        self._ready = threading.Event()
        self._last_probe = 0.0

    def stop(self) -> None:
        self._stop.set()

    def ready(self) -> bool:
        """False while the broker is away (from librdkafka's all-brokers-down until the
        next record or metadata round trip), for a /readyz endpoint."""
        return self._ready.is_set()

    def _on_client_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._ready.clear()

    def _poison(self, record: Message, error: Exception) -> None:
        """Set an undecodable record aside on `poison`, durably, before its batch commits."""
        if self._poison_producer is None:
            self._poison_producer = kafka_clients.producer(self._kafka)
        self._poison_producer.produce(
            self._topics.name("poison"),
            record.value(),
            record.key(),
            headers=poison_headers(record, error, "projector"),
        )
        if self._poison_producer.flush(30):
            raise StreamsError("projector: a poison record was not delivered; not committing its batch")

    def run(self) -> None:
        schema = self._settings.schema_name
        plans = SystemsPlans(self._kafka, self._topics.systems)
        plans.start()
        with connect(self._dsn, schema) as conn, closing(plans):
            migrate(conn, schema)
            store = ReadModelStore(conn, self._topics.name("breakers"), plans=plans.resolve)
            metrics = _ProjectorMetrics(self._registry)

            def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
                stored = store.stored_offsets(self._sources)
                for tp in partitions:
                    offset = stored.get((tp.topic, tp.partition))
                    store.expected[(tp.topic, tp.partition)] = offset
                    tp.offset = OFFSET_BEGINNING if offset is None else offset
                c.assign(partitions)
                log.info("projector: assigned %s", [(tp.topic, tp.partition, tp.offset) for tp in partitions])

            def open_consumer() -> Consumer:
                consumer = kafka_clients.consumer(
                    self._kafka, group_id(self._topics), start="earliest", error_cb=self._on_client_error,
                    tuning={"group.instance.id": self._settings.instance_id,  # static: docs/failover.md
                            "session.timeout.ms": self._settings.session_timeout_ms})
                consumer.subscribe(self._sources, on_assign=on_assign)
                return consumer

            consumer = open_consumer()
            self._ready.set()
            pruned_at = 0.0
            try:
                while not self._stop.is_set():
                    try:
                        self._step(consumer, store, metrics)
                    except _ConsumerLost as lost:
                        # Offsets live in Postgres: a new consumer resumes exactly there.
                        # (A static member was fenced when its group's coordinator moved
                        # to another broker of a cluster: bench.chaos --brokers 3.)
                        log.warning("projector: %s; a new consumer takes over", lost)
                        with contextlib.suppress(KafkaException):
                            consumer.close()
                        consumer = open_consumer()
                        continue
                    if time.monotonic() - pruned_at >= self._settings.prune_interval_ms / 1000:
                        pruned_at = time.monotonic()
                        self._prune(conn)
            except KafkaException as error:  # the boundary: nothing raw leaves the projector
                raise KafkaIOError.wrap(error, "projector") from error
            finally:
                self._ready.clear()
                consumer.close()

    def _prune(self, conn: Any) -> None:
        """Read-model retention between batches: one batch of deletions at a time, so
        projecting never waits for more than one short transaction."""
        keep_ms = self._settings.prune_finished_after_ms
        if keep_ms is None:
            return
        cutoff = int(time.time() * 1000) - keep_ms
        report = prune_finished_runs(conn, cutoff, self._settings.prune_batch_size, max_batches=20)
        if report.runs:
            log.info("projector: pruned %d finished runs older than %d ms", report.runs, keep_ms)

    def _step(self, consumer: Consumer, store: ReadModelStore, metrics: _ProjectorMetrics) -> None:
        records = consumer.consume(self._settings.max_batch_records, self._settings.max_batch_ms / 1000)
        good: list[Message] = []
        for record in records:
            error = record.error()
            if error is None:
                good.append(record)
            elif error.code() == KafkaError._FATAL or error.fatal():
                raise _ConsumerLost(str(error))
            elif error.code() != KafkaError._PARTITION_EOF:  # the broker is away: librdkafka reconnects
                log.warning("projector: %s", error)
                self._ready.clear()
        self._probe(consumer)
        if not good:
            return
        result = store.apply(good, self._poison)
        if result.moved is not None:
            log.warning("projector: stored offsets moved under us %s; seeking", result.moved)
            for (topic, partition), offset in result.moved.items():
                store.expected[(topic, partition)] = offset
                consumer.seek(TopicPartition(topic, partition, OFFSET_BEGINNING if offset is None else offset))
            return
        self.batches += 1
        metrics.applied(result.applied, result.skipped)
        ends = {(r.topic(), r.partition()): r.offset() + 1 for r in good}
        try:  # informational only: Postgres holds the offsets that count
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()])  # async by default
        except KafkaException as error:
            log.debug("projector: informational offset commit failed: %s", error)


    def _probe(self, consumer: Consumer) -> None:
        """Not ready: one metadata round trip a second tells when the broker is back.
        Records alone do not: they may come from what was fetched before the outage."""
        if self._ready.is_set() or time.monotonic() - self._last_probe < 1.0:
            return
        self._last_probe = time.monotonic()
        try:
            consumer.list_topics(self._sources[0], timeout=1.0)
        except KafkaException:
            return
        self._ready.set()


class _ProjectorMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._records = None
        self._skipped = None
        if registry is not None:
            from prometheus_client import Counter

            self._records = Counter(
                "taskplane_projector_records", "Records folded into the read model.", registry=registry
            )
            self._skipped = Counter(
                "taskplane_projector_skipped_records", "Undecodable records the projector skipped.",
                registry=registry,
            )

    def applied(self, records: int, skipped: int) -> None:
        if self._records is not None and self._skipped is not None:
            self._records.inc(records)
            self._skipped.inc(skipped)
