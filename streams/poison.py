"""How any consumer sets aside a record it cannot decode or validate: the original
bytes on ``poison``, with where it came from and why in the headers.

``decoded_input`` is the one check every input record passes (the processors' runtime,
the worker's ``work`` reader): whatever bytes, key or headers a record has, it either
yields what the consumer expects or raises ``SerdeError`` with the reason the record
goes to ``poison``; nothing else escapes to crash the consumer."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Message

from taskplane.streams.exceptions import SerdeError
from taskplane.streams.serde import Meta


def poison_headers(record: Message, error: Exception, processor: str) -> list[tuple[str, bytes]]:
    return [
        ("source.topic", (record.topic() or "").encode()),
        ("source.partition", str(record.partition()).encode()),
        ("source.offset", str(record.offset()).encode()),
        ("error", str(error).encode()),
        ("processor", processor.encode()),
    ]


def decoded_input(
    decode: Callable[[bytes], tuple[Meta, object]],
    value: bytes | None,
    key: bytes | None,
    accepted: tuple[type, ...] = (),
) -> tuple[str, Meta, object]:
    """The record's key (else the envelope's), envelope and message. ``SerdeError``
    says why it belongs on ``poison``: no value (a tombstone), bytes that do not decode,
    a message that is not one of ``accepted`` (when given), a key that is not UTF-8."""
    if value is None:
        raise SerdeError("no value (a tombstone)")
    try:
        meta, message = decode(value)
    except SerdeError:
        raise
    except Exception as error:  # the codec's contract is SerdeError; nothing else may escape
        raise SerdeError(f"undecodable: {error!r}") from error
    if accepted and type(message) not in accepted:
        expected = " | ".join(cls.__name__ for cls in accepted)
        raise SerdeError(f"a {type(message).__name__} is not an input here (expected {expected})")
    if not key:
        return meta.key, meta, message
    try:
        return key.decode(), meta, message
    except UnicodeDecodeError:
        raise SerdeError(f"key is not UTF-8: {key[:40]!r}") from None
