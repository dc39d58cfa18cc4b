"""bench.chaos on a KRaft cluster (``--brokers 3``): the kills that only a cluster has.

- ``leader``: SIGKILL the node leading a busy ``commands`` or ``events`` partition;
- ``controller``: SIGKILL the node leading the KRaft quorum;
- ``rolling``: every node in turn stopped (controlled shutdown) and started again, each
  back in sync before the next, the way every Kafka upgrade is done;
- ``isr``: two nodes SIGKILLed at once: one replica left, under min ISR 2 (and, nodes
  being combined, no controller quorum): produces stall or abort, nothing is lost; one
  node returns and the runs resume, then the other.

Recovered means served again: every ``commands`` partition with input waiting has its
orchestrator offsets committed past where they were before the kill (whichever instance
owns it now). Killed nodes come back on their data dirs and ports, and the next kill
waits until every replica is in sync again.
"""

from __future__ import annotations

import random
import time
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from taskplane.devstack.cluster import LocalKafkaCluster, partition_leader
from taskplane.streams import kafka_clients

CLUSTER_KINDS = ("leader", "controller", "rolling", "isr")
# isr: from the first node's return, which must first catch up to rejoin the ISR.
BOUND_S = {"leader": 5.0, "controller": 5.0, "rolling": 5.0, "isr": 30.0}
IN_SYNC_S = 180.0


class Served:
    """Committed offsets of the orchestrators' group per ``commands`` partition, against
    the partitions' ends: which partitions moved since a baseline."""

    def __init__(self, kafka: dict[str, Any], group: str, topic: str) -> None:
        # Never subscribes: reading a group's committed offsets does not join it.
        self._new_reader = lambda: kafka_clients.consumer({**kafka, "log_level": 0}, group)
        self._reader = self._new_reader()
        self._topic = topic
        self._partitions = list(self._reader.list_topics(topic, timeout=30).topics[topic].partitions)

    def committed(self) -> dict[int, int] | None:
        try:
            # A short deadline: while the group coordinator moves, a call waits out its whole
            # deadline, and a 2 s one added up to 2 s to the recovery it measured.
            found = self._reader.committed([TopicPartition(self._topic, p) for p in self._partitions], 0.5)
        except KafkaException:
            # A fresh reader asks for the group's coordinator at once: this one, after its
            # coordinator's node died, looked it up again only after its own backoff (the
            # orchestrators had committed 1.5 s before it saw it).
            self._reader.close()
            self._reader = self._new_reader()
            return None
        return {tp.partition: tp.offset for tp in found}

    def baseline(self, timeout_s: float = 60.0) -> dict[int, int]:
        deadline = time.monotonic() + timeout_s
        while (found := self.committed()) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        return found or {}

    def wait_moved(self, before: dict[int, int], timeout_s: float, trace: str = "") -> float | None:
        """Seconds until every partition that had input past ``before`` was committed past
        it; None when one was not within ``timeout_s``. ``trace``: a line naming it, with
        when each partition moved and how many reads failed (where the seconds went)."""
        started = time.monotonic()
        waiting = set(before)
        moved: dict[int, float] = {}
        failed, unreadable_until = 0, 0.0
        while time.monotonic() - started < timeout_s:
            found = self.committed()
            failed += found is None
            if found is None:
                unreadable_until = time.monotonic() - started  # what moved meanwhile is seen late
            now = found or {}
            for partition in list(waiting):
                if now.get(partition, -1) > before[partition] or not self._has_input(partition, before[partition]):
                    waiting.discard(partition)
                    moved[partition] = time.monotonic() - started
            if not waiting:
                if trace:
                    print(f"{trace}: partitions moved after " + ", ".join(
                        f"{p}: {t:.1f}s" for p, t in sorted(moved.items())) + f"; {failed} read(s) failed"
                          + (f", the last {unreadable_until:.1f}s after the kill" if failed else ""), flush=True)
                return time.monotonic() - started
            time.sleep(0.1)
        return None

    def _has_input(self, partition: int, offset: int) -> bool:
        try:
            _low, high = self._reader.get_watermark_offsets(TopicPartition(self._topic, partition), 0.5)
        except KafkaException:
            return True  # cannot tell: wait
        return bool(high > offset)

    def close(self) -> None:
        self._reader.close()


def _stamp(what: str, at: float) -> None:
    """A wall-clock line, to line up with the components' and nodes' logs."""
    print(f"{time.strftime('%H:%M:%S', time.gmtime(at))}.{int(at % 1 * 1000):03d} {what}", flush=True)


def wait_in_sync(kafka: dict[str, Any], timeout_s: float = IN_SYNC_S) -> float:
    """Seconds until every partition of every topic (the internal ones too) has all its
    replicas in sync: a node that came back has caught up."""
    admin = kafka_clients.admin({**kafka, "log_level": 0})
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            metadata = admin.list_topics(timeout=5)
            lagging = [(t, p.id) for t, meta in metadata.topics.items() for p in meta.partitions.values()
                       if len(p.isrs) < len(p.replicas) or p.leader < 0]
            if not lagging:
                return time.monotonic() - started
        except KafkaException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"replicas not in sync {timeout_s:.0f}s after a node's return")


def kill_node_kind(stack: Any, kind: str, rng: random.Random, outages: list[tuple[float, float]]) -> float | None:
    """One kill of ``kind`` on ``stack.cluster``; seconds until every busy partition was
    served again (for ``isr``: from the first node's return), None when never."""
    cluster: LocalKafkaCluster = stack.cluster
    served = Served(stack.kafka, f"{stack.topics.prefix}.orchestrator", stack.topics.commands)
    try:
        before = served.baseline()
        if kind in ("leader", "controller"):
            if kind == "leader":
                topic = rng.choice([stack.topics.commands, stack.topics.events])
                node = partition_leader(kafka_clients.admin({**stack.kafka, "log_level": 0}), topic, rng.randrange(4))
            else:
                node = cluster.active_controller() or rng.choice(cluster.running())
            down = time.time()
            cluster.kill(node)
            _stamp(f"{kind}: SIGKILL node {node}", down)
            took = served.wait_moved(before, 120.0, kind)
            cluster.start_node(node)
            outages.append((down, time.time()))
        elif kind == "rolling":
            # Each step: a controlled shutdown moves the node's leaderships first; the runs
            # must be served while it is down (worst step reported), then it returns.
            down = time.time()
            steps: list[float | None] = []
            for node in list(cluster.nodes):
                before = served.baseline()
                _stamp(f"rolling: stopping node {node}", time.time())
                cluster.nodes[node].stop()
                steps.append(served.wait_moved(before, 120.0))
                _stamp(f"rolling: node {node} step took {steps[-1]}", time.time())
                cluster.start_node(node)
                wait_in_sync(stack.kafka)
            outages.append((down, time.time()))
            took = None if None in steps else max(t for t in steps if t is not None)
        elif kind == "isr":
            first, second = rng.sample(sorted(cluster.nodes), 2)
            down = time.time()
            cluster.kill(first)
            cluster.kill(second)
            time.sleep(rng.uniform(3, 6))  # the outage: one replica, no quorum
            before = served.baseline(5.0) or before
            cluster.start_node(first)
            took = served.wait_moved(before, 120.0)
            cluster.start_node(second)
            outages.append((down, time.time()))
        else:
            raise ValueError(kind)
        wait_in_sync(stack.kafka)
        return took
    finally:
        served.close()
