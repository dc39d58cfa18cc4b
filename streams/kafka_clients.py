"""Every Kafka client taskplane makes: consumers, producers, the processors'
transactional producers and admin clients, with the settings they all share.

What every client gets here: the short reconnect backoff (``with_reconnect_backoff``:
resume within seconds of a broker's return), no auto-commit (taskplane commits offsets
in transactions, or never), and librdkafka's own log lines (``%4|...|GETPID|...``)
sent to Python logging at debug level instead of the user's stderr. Set
``TASKPLANE_KAFKA_DEBUG=1`` to have them on stderr again (any other value is also
passed to librdkafka as its ``debug`` contexts, e.g. ``cgrp,eos``). What differs per
use is a named option at the call site; ``tuning`` carries the rest (librdkafka names),
each with its reason where it is passed. Explicit settings in the config always win
over the shared ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from taskplane.streams.settings import KAFKA_DEBUG_ENV, with_reconnect_backoff

ErrorCallback = Callable[[KafkaError], None]
_librdkafka_log = logging.getLogger("taskplane.librdkafka")


class _DebugLines:
    """librdkafka's ``logger``: every line at debug level, whatever its syslog level
    (connection refusals while a broker restarts are expected here, and reported
    through error callbacks and readiness where they matter)."""

    def log(self, level: int, message: str, *args: Any) -> None:
        _librdkafka_log.debug(message, *args)


_DEBUG_LINES = _DebugLines()

# A reader that follows a quiet topic (a table, a worker's inbox) and keeps no partition
# out of its fetches: the broker answers a held fetch as soon as a record, or the commit
# marker that makes one readable, arrives, so the wait costs such a reader no latency, and
# each wait that ends empty is a request. librdkafka's 500 ms made 2 fetches a second per
# reader, 8 of an idle worker's (bench.idle). Not for a reader that waits for EOF: EOF
# comes from an empty fetch, after this wait.
FOLLOWING = {"fetch.wait.max.ms": 2_000}


def shared(kafka_config: Mapping[str, Any]) -> dict[str, Any]:
    """``kafka_config`` with what every client shares (its own settings win)."""
    config = with_reconnect_backoff(kafka_config)
    if not os.environ.get(KAFKA_DEBUG_ENV):
        config.setdefault("logger", _DEBUG_LINES)
    return config


def consumer(
    kafka_config: Mapping[str, Any],
    group: str,
    *,
    committed_only: bool = True,
    start: Literal["earliest", "latest"] | None = None,
    eof: bool = False,
    protocol: Literal["classic", "consumer"] | None = None,
    error_cb: ErrorCallback | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Consumer:
    """A consumer that never auto-commits. ``group`` is the group id (only a label for a
    reader that assigns partitions itself); ``committed_only`` reads read_committed;
    ``start`` is where a partition without a usable offset starts (librdkafka's
    default, latest, when None); ``eof`` reports each partition's end."""
    config = {**shared(kafka_config), "group.id": group, "enable.auto.commit": False,
              "isolation.level": "read_committed" if committed_only else "read_uncommitted"}
    if start is not None:
        config["auto.offset.reset"] = start
    if eof:
        config["enable.partition.eof"] = True
    if protocol is not None:
        config["group.protocol"] = protocol
    if error_cb is not None:
        config["error_cb"] = error_cb
    return Consumer({**config, **(tuning or {})})


def producer(
    kafka_config: Mapping[str, Any],
    *,
    durable: bool = True,
    linger_ms: int | None = None,
    partitioner: str | None = None,
    error_cb: ErrorCallback | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Producer:
    """A producer. ``durable``: acks from every in-sync replica and idempotence (no
    duplicates or reordering on retries). ``partitioner``: ``murmur2_random`` where
    records must land where the Java clients (and ``partition_for``) put the same key."""
    config = shared(kafka_config)
    if durable:
        config.update({"acks": "all", "enable.idempotence": True})
    if linger_ms is not None:
        config["linger.ms"] = linger_ms
    if partitioner is not None:
        config["partitioner"] = partitioner
    if error_cb is not None:
        config["error_cb"] = error_cb
    return Producer({**config, **(tuning or {})})


def transactional_producer(
    kafka_config: Mapping[str, Any],
    transactional_id: str,
    *,
    transaction_timeout_ms: int,
    linger_ms: int | None = None,
    partitioner: str | None = None,
    error_cb: ErrorCallback | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Producer:
    """A producer for transactions (``init_transactions`` is the caller's: see
    ``streams/transactions.py``). ``transactional_id`` fences every earlier producer
    with the same id."""
    config = {**shared(kafka_config), "transactional.id": transactional_id,
              "transaction.timeout.ms": transaction_timeout_ms}
    if linger_ms is not None:
        config["linger.ms"] = linger_ms
    if partitioner is not None:
        config["partitioner"] = partitioner
    if error_cb is not None:
        config["error_cb"] = error_cb
    return Producer({**config, **(tuning or {})})


def admin(kafka_config: Mapping[str, Any]) -> AdminClient:
    """An admin client. Keep it referenced until every future it returned is answered:
    a freed client never answers."""
    return AdminClient(shared(kafka_config))
