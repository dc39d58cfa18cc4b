"""The client's way in: submit runs and publish commands to the orchestrator.

    with Publisher(kafka_config, Topics("taskplane")) as publisher:
        run_id = publisher.submit_run(plan, {"path": "in/"}, idempotency_key="order-42")

A submit with an idempotency key derives the run id from it, so a retried submit
lands on the same run and the orchestrator refuses the duplicate. Delivery is
explicit: ``flush()`` waits for every record and raises if any was not written.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any

from confluent_kafka import KafkaError, Message

from taskplane.contract.messages import SubmitRun
from taskplane.contract.plan import SystemDefinition, SystemPlan
from taskplane.contract.plans import pinned_key
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import (
    AUTHORIZATION_FAILED,
    KafkaIOError,
    StreamsError,
    principal_of,
)
from taskplane.streams.serde import Serde, new_meta
from taskplane.streams.topics import Topics

_RUN_NAMESPACE = uuid.UUID("5b0c7e4e-5f4b-4d3e-9b7a-7a9d1c2f0e11")


class PublishError(StreamsError):
    """Some records were not written; ``failures`` says which and why."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__(f"{len(failures)} record(s) not delivered: " + "; ".join(failures[:5]))
        self.failures = failures
        self.retryable = True


def run_id_for(system: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return uuid.uuid4().hex
    return uuid.uuid5(_RUN_NAMESPACE, f"{system}\x00{idempotency_key}").hex


class Publisher:
    def __init__(self, kafka_config: dict[str, Any], topics: Topics, serde: Serde | None = None) -> None:
        self._topics = topics
        self._serde = serde or Serde()
        self._failures: list[str] = []
        self._refused: KafkaIOError | None = None
        self._principal = principal_of(kafka_config)
        self._producer = kafka_clients.producer(kafka_config, linger_ms=5, partitioner="murmur2_random")

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def submit_run(
        self, plan: SystemPlan, run_input: Any, idempotency_key: str | None = None, correlation_id: str | None = None
    ) -> str:
        """Publish a SubmitRun; returns the run id (stable for a given idempotency key)."""
        text = run_input if isinstance(run_input, str) else json.dumps(run_input, sort_keys=True)
        run_id = run_id_for(plan.name, idempotency_key)
        self.publish(SubmitRun(run_id, plan, text, idempotency_key), correlation_id=correlation_id)
        return run_id

    def publish(self, command: Any, correlation_id: str | None = None, message_id: str | None = None) -> None:
        """Publish any orchestrator command (keyed by its run id). ``message_id``: the
        envelope's id (random by default); what the orchestrator writes for the command
        names it as its ``causation_id``."""
        key: str = command.run_id
        self._produce(self._topics.commands, key, command, correlation_id or key, message_id)

    def to_cron(self, command: Any) -> None:
        """A command to the cron processor (``contract/cron.py``), keyed by its system."""
        self._produce(self._topics.schedules, command.system, command, None)

    def define_system(self, definition: SystemDefinition) -> None:
        """The system's current definition (key: its name), and the version for good
        (key ``name@version``: what runs of it reference, ``contract/plans.py``)."""
        self._produce(self._topics.systems, pinned_key(definition.name, definition.version), definition, None)
        self._produce(self._topics.systems, definition.name, definition, None)

    def _produce(self, topic: str, key: str, value: Any, correlation_id: str | None,
                 message_id: str | None = None) -> None:
        now_ms = int(time.time() * 1000)
        meta = new_meta(key, type(value).__name__, now_ms, correlation_id=correlation_id)
        if message_id is not None:
            meta = dataclasses.replace(meta, message_id=message_id)
        payload = self._serde.encode(value, meta)
        while True:
            try:
                self._producer.produce(topic, payload, key, timestamp=now_ms, on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: make room, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(f"{message.topic()}[{message.key()!r}]: {error.str()}")
            if error.code() in AUTHORIZATION_FAILED and self._refused is None:
                self._refused = KafkaIOError.wrap(error, f"writing {message.topic()} as {self._principal}")

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every record; PublishError when some were not written, NotAuthorized
        (not retryable) when the cluster's ACLs refused them."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            self._failures.append(f"{remaining} record(s) still queued after {timeout_s}s")
        if self._refused is not None:
            refused, self._refused, self._failures = self._refused, None, []
            raise refused
        if self._failures:
            failures, self._failures = self._failures, []
            raise PublishError(failures)
