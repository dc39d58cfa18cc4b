"""Temporary smoke demo: one Avro event through a Kafka transaction, one row in Postgres.

Uses the endpoints from the environment or the running dev stack, else starts a
throwaway local stack and stops it at the end.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from typing import Any

import fastavro
import psycopg
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.devstack import ensure_stack
from streams.settings import StackSettings

SMOKE_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "SmokeEvent",
        "namespace": "dev.taskplane.demo",
        "fields": [
            {"name": "run_id", "type": "string"},
            {"name": "task", "type": "string"},
            {"name": "at_ms", "type": "long"},
        ],
    }
)


def encode(event: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, SMOKE_SCHEMA, event)
    return buffer.getvalue()


def decode(payload: bytes) -> dict[str, Any]:
    record = fastavro.schemaless_reader(io.BytesIO(payload), SMOKE_SCHEMA, SMOKE_SCHEMA)
    assert isinstance(record, dict)
    return record


def _kafka_round_trip(settings: StackSettings, bootstrap: str, event: dict[str, Any]) -> bytes:
    config = settings.kafka_config(bootstrap, {"log_level": 3})  # librdkafka: errors only
    topic = f"{settings.topic_prefix}.smoke-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(config)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    try:
        producer = Producer({**config, "transactional.id": f"smoke-{uuid.uuid4().hex}"})
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce(topic, key=event["run_id"].encode(), value=encode(event))
        producer.commit_transaction(30)
        consumer = Consumer(
            {
                **config,
                "group.id": f"smoke-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    raise KafkaException(message.error())
                payload = message.value()
                assert payload is not None
                consumer.commit(message=message, asynchronous=False)
                return payload
            raise TimeoutError(f"the committed event never reached a consumer of {topic}")
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])


def _postgres_round_trip(database_url: str, event: dict[str, Any]) -> tuple[Any, ...]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS demo_smoke (run_id text PRIMARY KEY, task text, at_ms bigint)"
        )
        conn.execute(
            "INSERT INTO demo_smoke VALUES (%(run_id)s, %(task)s, %(at_ms)s)"
            " ON CONFLICT (run_id) DO UPDATE SET task = excluded.task",
            event,
        )
        row = conn.execute(
            "SELECT run_id, task, at_ms FROM demo_smoke WHERE run_id = %s", (event["run_id"],)
        ).fetchone()
        conn.execute("DELETE FROM demo_smoke WHERE run_id = %s", (event["run_id"],))
    assert row is not None
    return tuple(row)


def run_smoke(echo: Callable[[str], None] = print, settings: StackSettings | None = None) -> None:
    settings = settings or StackSettings()
    with ensure_stack(settings, progress=echo) as endpoints:
        echo(f"kafka:    {endpoints.bootstrap_servers}")
        echo(f"postgres: {endpoints.database_url.split('@')[-1]}")
        event = {"run_id": f"run-{uuid.uuid4().hex[:8]}", "task": "parser", "at_ms": 0}
        event["at_ms"] = int(time.time() * 1000)
        payload = _kafka_round_trip(settings, endpoints.bootstrap_servers, event)
        echo(f"produced in a transaction: {event} ({len(encode(event))} Avro bytes)")
        echo(f"consumed read_committed:   {decode(payload)}")
        row = _postgres_round_trip(endpoints.database_url, decode(payload))
        echo(f"written and read in Postgres: {row}")
        if decode(payload) != event or row != (event["run_id"], event["task"], event["at_ms"]):
            raise RuntimeError("smoke round trip returned something else than was sent")
        echo("smoke demo OK")
