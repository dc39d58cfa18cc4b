"""The error tree of ``streams/``, rooted in ``TaskplaneError``: Kafka's errors are
wrapped here, at the boundary, and say whether retrying the same call can succeed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from taskplane.contract.errors import TaskplaneError

# librdkafka marks few errors retriable(); these local ones also pass when the broker
# comes back (a restart, a network blip), so the same call may then succeed.
_TRANSIENT = frozenset({
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._WAIT_COORD,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
})


# The broker's authorizer said no: the same call fails the same way until an ACL changes.
AUTHORIZATION_FAILED = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
})


def principal_of(kafka_config: Mapping[str, Any]) -> str:
    """The principal a client config authenticates as, for error messages."""
    user = kafka_config.get("sasl.username")
    return f"User:{user}" if user else "User:ANONYMOUS"


class StreamsError(TaskplaneError):
    """Any failure of Kafka I/O or serialization.

    ``retryable`` is True when the same call may succeed later (a broker hiccup),
    False when it never will (a record that cannot be decoded).
    """


class SerdeError(StreamsError):
    """A value could not be encoded, or bytes could not be decoded into a domain
    object: bad magic, unknown schema fingerprint, truncated or invalid body, or a
    body that does not map onto its dataclass. Never retryable: the same bytes fail
    the same way, so the record belongs on ``poison``."""

    retryable = False


class KafkaIOError(StreamsError):
    """A Kafka client call failed. ``code`` is librdkafka's error code (None when the
    client raised without one), ``fatal`` that the client instance is unusable."""

    def __init__(self, message: str, *, code: int | None = None, fatal: bool = False,
                 retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code
        self.fatal = fatal

    @classmethod
    def wrap(cls, error: KafkaException | KafkaError, context: str) -> KafkaIOError:
        """``error`` as a KafkaIOError saying ``context: <librdkafka's reason>``."""
        kafka_error = error if isinstance(error, KafkaError) else (error.args[0] if error.args else None)
        if not isinstance(kafka_error, KafkaError):
            return cls(f"{context}: {error}")
        fatal = kafka_error.fatal()
        if kafka_error.code() in AUTHORIZATION_FAILED:
            return NotAuthorized(f"{context}: {kafka_error.str()}", code=kafka_error.code(), fatal=fatal)
        retryable = not fatal and (kafka_error.retriable() or kafka_error.code() in _TRANSIENT)
        return cls(f"{context}: {kafka_error.str()}", code=kafka_error.code(), fatal=fatal, retryable=retryable)


class NotAuthorized(KafkaIOError):
    """The cluster's ACLs refuse this principal the operation (``context`` names the
    topic, group or transactional id and the principal). Never retryable as is: a
    person grants the ACL or fixes the credentials (docs/security.md)."""

    def __init__(self, message: str, *, code: int | None = None, fatal: bool = False,
                 retryable: bool = False) -> None:
        super().__init__(message, code=code, fatal=fatal, retryable=False)
