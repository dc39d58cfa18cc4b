"""Runs on a 3-node KRaft cluster (replication 3, min ISR 2) while the leader of a busy
partition is SIGKILLed: the partition's leadership moves to a follower, the
orchestrator's transactions abort and retry there, and every submitted run succeeds
once, none lost, none done twice."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskplane.contract.messages import RunSucceeded
from taskplane.devstack.cluster import LocalKafkaCluster, partition_leader
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing.stack import (
    EventLog,
    ProcessorThreads,
    WorkerProcess,
    compile_manifest,
    worker_env,
)
from tests.e2e.e2e_pipeline import E2E_TOOLS, TEARDOWN_STOP_S

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
SLEEPER = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: sleeper}
spec:
  agents:
    - name: sleeper
      tools: [clock.sleep]
  execution: {leaseTimeout: 10s, maxRetries: 3, initialBackoff: 200ms}
"""
RUNS_BEFORE, RUNS_AFTER = 20, 20


@pytest.fixture
def cluster(stack_settings: StackSettings) -> Iterator[LocalKafkaCluster]:
    """Three nodes of this test only: killing one must not disturb the session's broker."""
    data_dir = Path(tempfile.mkdtemp(prefix="taskplane-test-cluster-"))
    nodes = LocalKafkaCluster(data_dir / "kafka", nodes=3, version=stack_settings.local_kafka_version,
                              cache_dir=stack_settings.cache_dir, start_timeout=300).start()
    try:
        yield nodes
    finally:
        # Thrown away with its data dir: the surviving nodes' controlled shutdown would
        # wait out the timeout asking a quorum that is going (8-9 s), and proves nothing.
        nodes.stop(timeout=1)
        shutil.rmtree(data_dir, ignore_errors=True)


def submit(publisher: Publisher, plan: Any, count: int) -> list[str]:
    run_ids = [publisher.submit_run(plan, {"seconds": 0.05}) for _ in range(count)]
    publisher.flush(120)
    return run_ids


def test_runs_complete_while_the_leader_of_a_busy_partition_is_killed(
        cluster: LocalKafkaCluster, fresh_database: str, unique_prefix: str, tmp_path: Path) -> None:
    kafka = StackSettings().kafka_config(cluster.bootstrap_servers, {"log_level": 3})
    admin = kafka_clients.admin(kafka)
    topics = Topics(unique_prefix)
    ensure_topics(admin, topics, catalog(2, 1))
    # A created topic reaches every node's metadata a moment later: the node that answers
    # may not know its partitions yet.
    deadline = time.monotonic() + 30
    while True:
        replicas = {len(p.replicas) for p in admin.list_topics(topics.events, timeout=10).topics[topics.events]
                    .partitions.values()}
        if replicas or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert replicas == {3}, f"events replicated on {replicas} brokers, the cluster has 3"
    publisher = Publisher({**kafka, "message.timeout.ms": 120_000}, topics)
    definition = compile_manifest(SLEEPER)
    publisher.define_system(definition)
    publisher.flush()
    processors = ProcessorThreads(kafka, topics, fresh_database, unique_prefix.replace("-", "_")).start()
    worker = WorkerProcess("w1", {"sleeper": E2E_TOOLS},
                           worker_env(cluster.bootstrap_servers, fresh_database, unique_prefix), tmp_path).start()
    log = EventLog(kafka, topics.events)
    try:
        first = submit(publisher, definition.plan, RUNS_BEFORE)
        log.wait_for(lambda log: set(first) <= {e.run_id for e in log.events(RunSucceeded)}, 180,
                     also=processors.check)
        # Partition 0 of commands is busy: runs land on both partitions, and more are
        # submitted around the kill while the first ones' events are still written.
        leader = partition_leader(admin, topics.commands, 0)
        during: list[str] = []
        submitter = threading.Thread(target=lambda: during.extend(submit(publisher, definition.plan, RUNS_AFTER)))
        submitter.start()
        cluster.kill(leader)
        submitter.join(180)
        moved = partition_leader(admin, topics.commands, 0)
        assert moved not in (leader, -1), f"commands-0 still led by {moved} after node {leader} died"
        wanted = set(first) | set(during)
        assert len(during) == RUNS_AFTER
        log.wait_for(lambda log: wanted <= {e.run_id for e in log.events(RunSucceeded)}, 180,
                     also=processors.check)
        done = Counter(e.run_id for e in log.events(RunSucceeded))
        assert [r for r, n in done.items() if n > 1] == [], "a run succeeded twice"
        assert worker.alive(), "the worker process died"
    finally:
        log.close()
        worker.stop(TEARDOWN_STOP_S)
        processors.stop()
