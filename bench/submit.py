"""The submit call alone, keyed against plain: the public ``Client`` against a bare
broker (no orchestrator: a submit returns once its command is written and flushed),
keyed and plain submits taking turns one by one, so a shared host's noise falls on both.

    python -m bench.submit [--submits N] [--quick]

Last line: JSON with, for keyed and plain, the submit call's p50/p99/mean (ms) and the
client's CPU per submit (ms; process time, librdkafka's threads included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench._peer_taskplane import MANIFEST, SYSTEM
from bench._peers_stats import percentile
from taskplane import Client
from taskplane.devstack.kafka import LocalKafka
from taskplane.streams.publisher import Publisher
from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import compile_manifest

WARMUP = 200


def measure(bootstrap: str, submits: int) -> dict[str, float]:
    config = {"bootstrap.servers": bootstrap, "log_level": 3}
    topics = Topics(f"bench-submit-{uuid.uuid4().hex[:6]}")
    ensure_topics(AdminClient(config), topics, catalog())
    with Publisher(config, topics) as publisher:
        publisher.define_system(compile_manifest(MANIFEST))
    calls: dict[str, list[float]] = {"keyed": [], "plain": []}
    cpu = {"keyed": 0.0, "plain": 0.0}
    with Client(bootstrap, topic_prefix=topics.prefix) as client:
        for index in range(WARMUP + 2 * submits):
            kind = "keyed" if index % 2 else "plain"
            key = uuid.uuid4().hex if kind == "keyed" else None
            cpu_before, began = time.process_time(), time.perf_counter()
            client.submit(SYSTEM, {"index": index}, idempotency_key=key)
            if index >= WARMUP:
                calls[kind].append((time.perf_counter() - began) * 1000)
                cpu[kind] += time.process_time() - cpu_before
    line: dict[str, float] = {"submits_each": submits}
    for kind, values in calls.items():
        line[f"{kind}_submit_p50_ms"] = round(percentile(values, 0.5), 3)
        line[f"{kind}_submit_p99_ms"] = round(percentile(values, 0.99), 3)
        line[f"{kind}_submit_mean_ms"] = round(statistics.mean(values), 3)
        line[f"{kind}_client_cpu_ms_per_submit"] = round(cpu[kind] * 1000 / len(values), 3)
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=2_000, help="submits of each kind")
    parser.add_argument("--quick", action="store_true", help="200 of each, for smoke checks")
    args = parser.parse_args(argv)
    if args.submits < 1:
        parser.error("--submits: must be at least 1")
    submits = 200 if args.quick else args.submits
    with tempfile.TemporaryDirectory(prefix="taskplane-bench-submit-") as workdir:
        kafka = LocalKafka(Path(workdir) / "kafka", cache_dir=StackSettings().cache_dir).start()
        try:
            line = measure(kafka.bootstrap_servers, submits)
        finally:
            kafka.stop()
    print(json.dumps(line))


if __name__ == "__main__":
    main()
