"""How any consumer sets aside a record it cannot decode or validate: the original
bytes on ``poison``, with where it came from and why in the headers."""

from __future__ import annotations

from confluent_kafka import Message


def poison_headers(record: Message, error: Exception, processor: str) -> list[tuple[str, bytes]]:
    return [
        ("source.topic", (record.topic() or "").encode()),
        ("source.partition", str(record.partition()).encode()),
        ("source.offset", str(record.offset()).encode()),
        ("error", str(error).encode()),
        ("processor", processor.encode()),
    ]
