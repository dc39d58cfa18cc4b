"""The console's only way to change anything: replay a dead letter, cancel a run.

``CommandWriter`` is the seam: ``PublisherCommands`` publishes through
``taskplane.streams.publisher`` today; when the public ``taskplane.Client`` lands it
replaces this one class (``client.replay(run_id, task)``, ``client.cancel(run_id)``).

A command is decided by the orchestrator, not here. After publishing, the writer
reads the run's partition of ``events`` from where it stood before, until the event
carrying the command's correlation id shows the decision (``TaskReplayed`` /
``RunCancelled``, or ``CommandRejected`` with the decider's reason).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from taskplane.console.errors import CommandFailed
from taskplane.contract import messages as m
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import SerdeError, StreamsError
from taskplane.streams.partitioning import partition_for
from taskplane.streams.publisher import Publisher
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the orchestrator decided: ``accepted`` True or False, or None when its
    decision was not seen within the wait (the command is written and will be decided)."""

    accepted: bool | None
    message: str


class CommandWriter(Protocol):
    def replay(self, run_id: str, task: str, requested_by: str = "console") -> Outcome: ...

    def cancel(self, run_id: str, reason: str = "cancelled from the console") -> Outcome: ...

    def close(self) -> None: ...


class PublisherCommands:
    def __init__(self, kafka_config: dict[str, Any], topics: Topics, outcome_timeout_s: float) -> None:
        self._kafka = kafka_config
        self._topics = topics
        self._timeout_s = outcome_timeout_s
        self._serde = Serde()
        self._publisher: Publisher | None = None
        self._partitions: int | None = None

    def replay(self, run_id: str, task: str, requested_by: str = "console") -> Outcome:
        return self._decide(m.ReplayTask(run_id, task, requested_by=requested_by), f"{run_id}/{task} replayed")

    def cancel(self, run_id: str, reason: str = "cancelled from the console") -> Outcome:
        return self._decide(m.CancelRun(run_id, reason), f"run {run_id} cancelled")

    def close(self) -> None:
        if self._publisher is not None:
            with contextlib.suppress(StreamsError):  # closing: nothing left to tell anyone
                self._publisher.flush(5)
            self._publisher = None

    def _decide(self, command: Any, accepted: str) -> Outcome:
        correlation = f"console-{uuid.uuid4().hex}"
        try:
            partition = TopicPartition(self._topics.name("events"), self._partition_of(command.run_id))
            reader = kafka_clients.consumer(self._kafka, correlation)
        except KafkaException as error:
            raise CommandFailed(f"Kafka is unreachable: {error.args[0].str()}") from None
        try:
            _low, high = reader.get_watermark_offsets(partition, timeout=self._timeout_s)
            partition.offset = high
            reader.assign([partition])
            self._publish(command, correlation)
            return self._await(reader, correlation, accepted)
        except KafkaException as error:
            raise CommandFailed(f"Kafka is unreachable: {error.args[0].str()}") from None
        finally:
            reader.close()

    def _partition_of(self, run_id: str) -> int:
        if self._partitions is None:
            metadata = kafka_clients.admin(self._kafka).list_topics(self._topics.name("events"), timeout=self._timeout_s)
            topic = metadata.topics.get(self._topics.name("events"))
            if topic is None or topic.error is not None or not topic.partitions:
                raise CommandFailed(f"no topic {self._topics.name('events')!r}: are the processors deployed?")
            self._partitions = len(topic.partitions)
        return partition_for(run_id, self._partitions)

    def _publish(self, command: Any, correlation: str) -> None:
        if self._publisher is None:
            self._publisher = Publisher(self._kafka, self._topics)
        try:
            self._publisher.publish(command, correlation_id=correlation)
            self._publisher.flush(self._timeout_s)
        except StreamsError as error:
            raise CommandFailed(f"the command was not written: {error}") from None

    def _await(self, reader: Consumer, correlation: str, accepted: str) -> Outcome:
        deadline = time.monotonic() + self._timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            for record in reader.consume(100, min(remaining, 0.2)):
                if record.error() is not None or record.value() is None:
                    continue
                try:
                    meta, event = self._serde.decode(record.value())
                except SerdeError:
                    continue
                if meta.correlation_id != correlation:
                    continue
                if isinstance(event, m.CommandRejected):
                    return Outcome(False, f"refused by the orchestrator: {event.reason}")
                if isinstance(event, m.TaskReplayed | m.RunCancelled):
                    return Outcome(True, accepted)
        return Outcome(None, "sent; the orchestrator has not decided yet (is it running?)")
