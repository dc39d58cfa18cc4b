"""The broker a benchmark runs against: the external one when
TASKPLANE_BOOTSTRAP_SERVERS is set, else the running dev stack, else a fresh local
broker for the duration of the benchmark."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskplane.streams.settings import StackSettings


@contextmanager
def bench_stack(pids: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """The broker's Kafka config; ``pids`` receives the broker's process id when this
    started one (for CPU accounting)."""
    settings = StackSettings()
    if settings.bootstrap_servers:
        yield settings.kafka_config()
        return
    from taskplane.devstack.kafka import LocalKafka

    with tempfile.TemporaryDirectory(prefix="taskplane-bench-") as tmp, LocalKafka(Path(tmp) / "kafka") as kafka:
        if pids is not None and kafka.pid is not None:
            pids.append(kafka.pid)
        yield settings.kafka_config(kafka.bootstrap_servers)
