"""What runs leave on each topic, counted from the log: committed records, their
payload bytes (key + value + headers) and the offsets the rest took (transaction
markers, one per partition a transaction wrote to, and aborted records) per topic of
one prefix, divided by the runs. Batch headers and replication come on top
(docs/scaling.md)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from taskplane.streams import kafka_clients
from taskplane.streams.topics import Topics, catalog


def topic_footprint(kafka: dict[str, Any], topics: Topics,
                    timeout_s: float = 120.0) -> dict[str, tuple[int, int, int]]:
    """(records, payload bytes, offsets) on each catalog topic of ``topics``, read_committed
    from the beginning to each partition's end; topics that hold nothing are left out."""
    reader = kafka_clients.consumer({**kafka, "log_level": 0}, f"footprint-{uuid.uuid4().hex[:6]}", eof=True)
    try:
        names = [topics.name(spec.role) for spec in catalog()]
        metadata = reader.list_topics(timeout=30).topics
        assignment = [TopicPartition(name, partition, OFFSET_BEGINNING)
                      for name in names if name in metadata for partition in metadata[name].partitions]
        offsets: dict[str, int] = {}
        filled = []  # partitions that hold anything: an empty one need not be waited for
        for tp in assignment:
            low, high = reader.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)
            offsets[tp.topic] = offsets.get(tp.topic, 0) + high - low
            if high > low:
                filled.append(tp)
        reader.assign(filled)
        pending = {(tp.topic, tp.partition) for tp in filled}
        counts: dict[str, list[int]] = {}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for record in reader.consume(1000, 0.5):
                error = record.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard((record.topic(), record.partition()))
                    continue
                tally = counts.setdefault(record.topic(), [0, 0])
                tally[0] += 1
                tally[1] += record_bytes(record.key(), record.value(), record.headers())
        if pending:
            raise TimeoutError(f"{len(pending)} partitions not read to their end within {timeout_s:.0f}s")
        prefix = topics.name("")
        return {name.removeprefix(prefix): (n, size, offsets[name]) for name, (n, size) in sorted(counts.items())}
    finally:
        reader.close()


def record_bytes(key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None) -> int:
    """A record's payload: key, value, and each header's name and value."""
    size = len(key or b"") + len(value or b"")
    for name, header in headers or ():
        size += len(name.encode()) + len(header or b"")
    return size


def per_run(footprint: Mapping[str, tuple[int, int, int]], runs: int) -> dict[str, dict[str, float]]:
    """Records, payload bytes and markers (offsets that are not committed records) per
    run on each topic, and their totals (``all``)."""
    if runs <= 0:
        raise ValueError(f"runs must be positive, got {runs}")
    totals = [sum(column) for column in zip(*footprint.values(), strict=True)] if footprint else [0, 0, 0]
    table = {topic: _row(counts, runs) for topic, counts in footprint.items()}
    table["all"] = _row((totals[0], totals[1], totals[2]), runs)
    return table


def _row(counts: tuple[int, int, int], runs: int) -> dict[str, float]:
    records, size, offsets = counts
    return {"records": round(records / runs, 2), "bytes": round(size / runs, 1),
            "markers": round(max(0, offsets - records) / runs, 2)}
