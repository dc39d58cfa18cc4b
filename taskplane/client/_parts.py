"""A client's Kafka parts, made on first use: the run follower, the publisher, the
``systems`` table, and the checks a submit passes before anything is written."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from taskplane.client._run_follower import RunFollower
from taskplane.client.run_input import encode_input
from taskplane.contract.messages import SubmitRun
from taskplane.contract.plan import SystemDefinition, SystemPlan
from taskplane.contract.plans import pinned_key
from taskplane.contract.scheduling import priority_problem, tenant_problem
from taskplane.exceptions import ClientError, InputTooLarge, UnknownSystem
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher, PublishError, run_id_for
from taskplane.streams.serde import Serde, new_meta
from taskplane.streams.table import GlobalTable
from taskplane.streams.topics import Topics

# librdkafka's default message.max.bytes, and what a record adds around key and value
# (batch header, record header, varints): a record within this margin of the limit is
# refused before it is sent.
PRODUCER_MAX_BYTES = 1_000_000
RECORD_OVERHEAD = 128


class ClientParts:
    def __init__(self, kafka_config: dict[str, Any], topics: Topics) -> None:
        self._kafka, self._topics = kafka_config, topics
        self.serde = Serde()
        self.follower = RunFollower(kafka_config, topics, self.serde)
        self._publisher: Publisher | None = None
        self._systems: GlobalTable | None = None
        self._limit: tuple[int, str] | None = None
        self._lock = threading.Lock()

    def submissions(self, system: str, inputs: Sequence[Any],
                    idempotency_keys: Sequence[str | None], tenant: str | None = None,
                    priority: int | None = None) -> list[SubmitRun]:
        """The SubmitRun commands for ``inputs``, each checked: the system was applied,
        the input is JSON and fits in a record the broker takes, the tenant and priority
        are well formed (ValueError naming the field)."""
        if len(idempotency_keys) != len(inputs):
            raise ValueError("one idempotency key (or None) per input")
        if tenant is not None and (problem := tenant_problem(tenant, given=True)) is not None:
            raise ValueError(f"tenant: {problem}")
        if priority is not None and (problem := priority_problem(priority)) is not None:
            raise ValueError(f"priority: {problem}")
        definition = self._definition(system)
        commands = []
        for value, key in zip(inputs, idempotency_keys, strict=True):
            command = SubmitRun(run_id_for(system, key), definition.plan, encode_input(value), key,
                                tenant or "", priority or 0)
            self._check_size(command)
            commands.append(command)
        return commands

    def publish(self, commands: Sequence[Any], message_ids: Sequence[str | None] | None = None) -> None:
        publisher = self._publisher_once()
        try:
            for command, message_id in zip(commands, message_ids or [None] * len(commands), strict=True):
                publisher.publish(command, message_id=message_id)
            publisher.flush()
        except PublishError as error:
            raise ClientError(str(error)) from error

    def close(self) -> None:
        self.follower.close()
        if self._systems is not None:
            self._systems.close()
        if self._publisher is not None:
            self._publisher.flush()

    def plan(self, reference: SystemPlan, timeout_s: float = 10.0) -> SystemPlan | None:
        """The body of a plan a ``RunSubmitted`` names: the orchestrator pins every
        version it accepts on ``systems`` (key ``name@version``) in the same transaction."""
        self._definition(None)
        assert self._systems is not None
        definition = self._systems.wait_for(pinned_key(reference.name, reference.version), timeout_s)
        return definition.plan if isinstance(definition, SystemDefinition) else None

    def _definition(self, system: str | None) -> Any:
        with self._lock:
            if self._systems is None:
                try:
                    self._systems = GlobalTable(self._kafka, self._topics.systems, self.serde)
                except Exception as error:
                    raise ClientError(str(error)) from error
            systems = self._systems
        try:
            systems.wait_until_caught_up()
        except Exception as error:
            raise ClientError(str(error)) from error
        if system is None:
            return None
        definition = systems.get(system)
        if definition is None:
            # name@version keys pin the versions runs reference; the names are what a user applied
            raise UnknownSystem(system, [key for key in systems.snapshot() if "@" not in key])
        return definition

    def _check_size(self, command: SubmitRun) -> None:
        payload = self.serde.encode(command, new_meta(command.run_id, "SubmitRun", int(time.time() * 1000)))
        size = len(payload) + len(command.run_id) + RECORD_OVERHEAD
        limit, where = self._size_limit()
        if size > limit:
            raise InputTooLarge(size, limit, where)

    def _size_limit(self) -> tuple[int, str]:
        """The smallest record limit on the way: the producer's, and ``max.message.bytes``
        of ``commands`` and ``events`` (the orchestrator copies the input there)."""
        if self._limit is not None:
            return self._limit
        producer = int(self._kafka.get("message.max.bytes", PRODUCER_MAX_BYTES))
        limits = [(producer, f"producer message.max.bytes {producer}")]
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in (self._topics.commands, self._topics.events)]
        admin = kafka_clients.admin(self._kafka)  # alive until every answer is in
        try:
            for resource, future in admin.describe_configs(resources, request_timeout=15).items():
                entry = future.result(15).get("max.message.bytes")
                if entry is not None and entry.value is not None:
                    value = int(entry.value)
                    limits.append((value, f"max.message.bytes {value} of topic {resource.name}"))
        except KafkaException as error:
            raise ClientError(f"cannot read the topic limits: {error}") from error
        self._limit = min(limits)
        return self._limit

    def _publisher_once(self) -> Publisher:
        with self._lock:
            if self._publisher is None:
                self._publisher = Publisher(self._kafka, self._topics, self.serde)
            return self._publisher
