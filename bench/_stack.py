"""The broker a benchmark runs against: the external one when
TASKPLANE_BOOTSTRAP_SERVERS is set, else the running dev stack, else a fresh local
broker (or, with ``brokers`` or TASKPLANE_BENCH_BROKERS above 1, a local KRaft cluster
of that many nodes) for the duration of the benchmark."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskplane.streams.settings import StackSettings


def bench_brokers(asked: int | None = None) -> int:
    """Brokers a benchmark starts: the argument, else TASKPLANE_BENCH_BROKERS, else 1."""
    return asked or int(os.environ.get("TASKPLANE_BENCH_BROKERS", "1"))


@contextmanager
def bench_stack(pids: list[int] | None = None, brokers: int | None = None) -> Iterator[dict[str, Any]]:
    """The broker's Kafka config; ``pids`` receives the brokers' process ids when this
    started them (for CPU accounting)."""
    settings = StackSettings()
    if settings.bootstrap_servers:
        yield settings.kafka_config()
        return
    from taskplane.devstack.cluster import LocalKafkaCluster
    from taskplane.devstack.kafka import LocalKafka

    nodes = bench_brokers(brokers)
    with tempfile.TemporaryDirectory(prefix="taskplane-bench-") as tmp:
        kafka = LocalKafka(Path(tmp) / "kafka") if nodes == 1 else LocalKafkaCluster(Path(tmp) / "kafka", nodes=nodes)
        with kafka:
            if pids is not None:
                pids.extend(kafka.pids)
            yield settings.kafka_config(kafka.bootstrap_servers)
