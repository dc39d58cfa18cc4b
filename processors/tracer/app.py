"""The tracer: ``events`` → OpenTelemetry spans over OTLP. Started by
``taskplane processor run tracer`` (``taskplane/processes.py``); off unless started.

A non-transactional consumer, like the projector, but with no store of its own: what
it needs to resume is in its committed offsets. Per partition it commits
- the offset: the first record of the oldest run still open (``RunSubmitted``), so a
  restarted tracer folds every open run again from its start, and
- the metadata: the offset after the last record whose spans were exported.
On assignment it seeks to the first and folds silently up to the second: a restart
re-exports nothing, loses nothing, and the spans it refolds have the same ids and
times (``spans.py``). A tracer started from offset 0 (a new group, or offsets reset)
re-exports the same spans, byte for byte: a receiver sees duplicates of ids it has.
Spans are exported before the offsets behind them are committed (at least once).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import replace
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import CollectorRegistry
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskplane.contract.messages import Event, RunSubmitted
from taskplane.processors.tracer.export import OtlpSink
from taskplane.processors.tracer.spans import SpanRecord, TraceFold
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import KafkaIOError, SerdeError
from taskplane.streams.plan_source import SystemsPlans
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics

log = logging.getLogger(__name__)


class TracerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPLANE_TRACER_", extra="ignore")

    group_id: str | None = Field(default=None, description="Consumer group (default: <prefix>.tracer); "
                                 "a new group starts from offset 0 and exports every span again.")
    max_batch_records: int = Field(default=1_000, ge=1)
    max_batch_ms: int = Field(default=100, ge=1, description="Longest wait for records before exporting.")
    commit_interval_ms: int = Field(default=1_000, ge=10, description="How often offsets are committed.")
    export_retry_ms: int = Field(default=1_000, ge=10, description="Wait before exporting a refused batch again.")
    instance_id: str = Field(default_factory=socket.gethostname,
                             description="Static group membership: a restarted pod takes its partitions back at once.")
    session_timeout_ms: int = Field(default=10_000, ge=1_000)


def group_id(topics: Topics, settings: TracerSettings) -> str:
    return settings.group_id or f"{topics.prefix}.tracer"


class _Partition:
    __slots__ = ("open", "exported_to", "next_offset")

    def __init__(self, exported_to: int) -> None:
        self.open: dict[str, int] = {}  # open run -> offset of its RunSubmitted, in log order
        self.exported_to = exported_to  # records below this offset had their spans exported
        self.next_offset: int | None = None

    def commit_point(self) -> tuple[int, int] | None:
        if self.next_offset is None:
            return None
        low = next(iter(self.open.values()), self.next_offset)
        return low, max(self.exported_to, self.next_offset)


class Tracer:
    def __init__(self, kafka_config: dict[str, Any], topics: Topics, settings: TracerSettings | None = None,
                 sink: OtlpSink | None = None, registry: CollectorRegistry | None = None) -> None:
        self._kafka = dict(kafka_config)
        self._topics = topics
        self._settings = settings or TracerSettings()
        self._sink = sink or OtlpSink()
        self._source = topics.name("events")
        self._serde = Serde()
        self._fold = TraceFold()
        self._partitions: dict[int, _Partition] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._metrics = _TracerMetrics(registry)
        self._closed_at: list[tuple[int, int]] = []  # (log time of the closing event, spans), this batch
        self.exported = 0  # spans the receiver took

    def stop(self) -> None:
        self._stop.set()

    def ready(self) -> bool:
        return self._ready.is_set()

    def run(self) -> None:
        plans = SystemsPlans(self._kafka, self._topics.systems)
        plans.start()
        consumer = kafka_clients.consumer(  # read_committed: aborted decisions are no spans
            self._kafka, group_id(self._topics, self._settings), start="earliest",
            tuning={"group.instance.id": self._settings.instance_id,
                    "session.timeout.ms": self._settings.session_timeout_ms})

        def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
            for tp in c.committed(partitions, timeout=30):
                start = tp.offset if tp.offset >= 0 else 0
                exported = int(tp.metadata) if tp.metadata and tp.metadata.isdigit() else start
                self._partitions[tp.partition] = _Partition(exported)
                tp.offset = OFFSET_BEGINNING if start == 0 else start
            c.assign(partitions)
            log.info("tracer: assigned %s", [(tp.partition, tp.offset) for tp in partitions])

        def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
            self._commit(c)
            for tp in partitions:
                gone = self._partitions.pop(tp.partition, None)
                for run_id in [] if gone is None else gone.open:
                    self._fold.forget(run_id)

        consumer.subscribe([self._source], on_assign=on_assign, on_revoke=on_revoke)
        self._ready.set()
        committed_at = time.monotonic()
        try:
            while not self._stop.is_set():
                self._step(consumer, plans)
                if time.monotonic() - committed_at >= self._settings.commit_interval_ms / 1000:
                    committed_at = time.monotonic()
                    self._commit(consumer)
            self._commit(consumer)
        except KafkaException as error:
            raise KafkaIOError.wrap(error, "tracer") from error
        finally:
            self._ready.clear()
            consumer.close()
            plans.close()
            self._sink.close()

    def _step(self, consumer: Consumer, plans: SystemsPlans) -> None:
        records = consumer.consume(self._settings.max_batch_records, self._settings.max_batch_ms / 1000)
        spans: list[SpanRecord] = []
        self._closed_at.clear()
        for record in records:
            error = record.error()
            if error is not None:
                if error.fatal():
                    raise KafkaIOError.wrap(error, "tracer: consume")
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("tracer: %s", error)
                continue
            self._fold_record(record, plans, spans)
        if spans:
            self._export(spans)
        self._metrics.open_runs(len(self._fold))

    def _fold_record(self, record: Message, plans: SystemsPlans, spans: list[SpanRecord]) -> None:
        partition = self._partitions.get(record.partition())
        value = record.value()
        if partition is None or value is None:
            return
        offset: int = record.offset() or 0
        partition.next_offset = offset + 1
        try:
            meta, decoded = self._serde.decode(value)
        except SerdeError as error:  # the projector sets it aside on poison; a trace just lacks it
            log.warning("tracer: undecodable events[%d]@%d: %s", record.partition(), offset, error)
            return
        event = cast(Event, decoded)
        if isinstance(event, RunSubmitted):
            if not event.plan.agents:  # a reference: the models are in the pinned plan, when known
                plan = plans(event.plan.name, event.plan.version)
                event = event if plan is None else replace(event, plan=plan)
            partition.open[event.run_id] = offset
        closed = self._fold.apply(event, meta.timestamp_ms)
        if not self._fold.is_open(event.run_id):
            partition.open.pop(event.run_id, None)
        if closed and offset >= partition.exported_to:
            spans.extend(closed)
            self._closed_at.append((meta.timestamp_ms, len(closed)))

    def _export(self, spans: list[SpanRecord]) -> None:
        """Until the receiver takes them: the offsets behind them wait meanwhile."""
        while not self._sink.export(spans):
            self._metrics.failed()
            log.warning("tracer: the receiver refused %d spans; trying again", len(spans))
            if self._stop.wait(self._settings.export_retry_ms / 1000):
                raise KafkaIOError("tracer: stopped with spans not exported (their offsets stay uncommitted)")
        self.exported += len(spans)
        self._metrics.exported(len(spans), self._closed_at, time.time() * 1000)

    def _commit(self, consumer: Consumer) -> None:
        offsets = []
        for number, partition in self._partitions.items():
            point = partition.commit_point()
            if point is not None:
                offsets.append(TopicPartition(self._source, number, point[0], metadata=str(point[1])))
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as error:  # the next commit carries the same facts
                log.warning("tracer: offset commit failed: %s", error)


LAG_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class _TracerMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._spans = self._failures = self._open = self._lag = None
        if registry is not None:
            from prometheus_client import Counter, Gauge, Histogram

            self._lag = Histogram("taskplane_tracer_lag_seconds",
                                  "From the decision that closed a span (its event's log time) to the "
                                  "OTLP receiver's answer.", registry=registry, buckets=LAG_BUCKETS)

            self._spans = Counter("taskplane_tracer_spans", "Spans the OTLP receiver took.", registry=registry)
            self._failures = Counter("taskplane_tracer_export_failures",
                                     "Span batches the OTLP receiver refused (retried).", registry=registry)
            self._open = Gauge("taskplane_tracer_open_runs", "Runs the tracer holds open.", registry=registry)

    def exported(self, count: int, closed_at: list[tuple[int, int]], now_ms: float) -> None:
        if self._spans is None or self._lag is None:
            return
        self._spans.inc(count)
        for at_ms, spans in closed_at:  # the receiver took them: decision -> received
            for _ in range(spans):
                self._lag.observe(max(0.0, now_ms - at_ms) / 1000)

    def failed(self) -> None:
        if self._failures is not None:
            self._failures.inc()

    def open_runs(self, count: int) -> None:
        if self._open is not None:
            self._open.set(count)
