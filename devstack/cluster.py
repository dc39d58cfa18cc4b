"""A real Kafka cluster of N KRaft nodes on this machine, for the dev stack, tests and
benches that need leader moves, controller failover and rolling restarts.

Each node is one JVM in combined mode (broker and controller): three controllers next
to three brokers would be six JVMs on a host of two cores, and a combined node fails
the way a Strimzi dual-role pool does (a node's death moves both its partition
leaderships and, when it led the quorum, the controller). Replication follows the
Strimzi default: factor min(N, 3), ``min.insync.replicas`` one less (2 on three nodes),
for every topic including ``__consumer_offsets`` and ``__transaction_state``.

Example::

    with LocalKafkaCluster(Path("/tmp/k3"), nodes=3) as cluster:
        cluster.bootstrap_servers            # "127.0.0.1:40001,127.0.0.1:40003,..."
        cluster.kill(cluster.active_controller()); cluster.start_node(...)
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from taskplane.devstack.kafka import (
    ClusterNode,
    LocalKafka,
    LocalStackError,
    Progress,
    _random_cluster_id,
    free_port,
)
from taskplane.streams.settings import DEFAULT_KAFKA_VERSION, StackSettings
from taskplane.streams.topics import replication_for

# Three JVMs share the host: each gets a smaller heap than a lone dev broker's 512 MB
# (a node's live set under bench.chaos stays under 100 MB) and one GC thread.
CLUSTER_HEAP = "384m"
# A SIGKILLed node keeps leading its partitions (and stays in their ISRs, holding acks=all
# produces) until the controller fences it, at the broker session timeout: 9 s by default.
# 2 s with heartbeats every 500 ms (the same 4:1 as the KIP-848 group sessions); 3 s put
# leader moves at 5.2-8.6 s. A SIGKILLed controller is replaced only after the followers'
# fetch timeout (2 s by default) and an election (1 s timeout, up to 1 s backoff), and the
# new one then waits a whole broker session before fencing the dead node: 1 s and 500 ms
# each here. The Raft leader answers a follower's fetch within 500 ms, so 1 s still
# leaves a missed answer's worth of slack. Strimzi users set the same in spec.kafka.config
# (docs/failover.md).
FAILOVER = {
    "broker.session.timeout.ms": "2000",
    "broker.heartbeat.interval.ms": "500",
    "controller.quorum.fetch.timeout.ms": "1000",
    "controller.quorum.election.timeout.ms": "500",
    "controller.quorum.election.backoff.max.ms": "500",
    # The controller's no-op metadata records (Kafka's 500 ms) show the other nodes that
    # the quorum's leader is alive; a lone dev broker writes them every 5 s (devstack/kafka.py).
    "metadata.max.idle.interval.ms": "500",
}
CLUSTER_JVM_OPTIONS = (
    "-XX:+UseParallelGC", "-XX:ParallelGCThreads=1",
    "-XX:TieredStopAtLevel=1", "-XX:CompileThresholdScaling=0.1",
)  # fmt: skip


class LocalKafkaCluster:
    """N combined KRaft nodes on 127.0.0.1 with fixed ports, so a killed node comes back
    where the others expect it (its data dir keeps its replicas)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        nodes: int = 3,
        version: str = DEFAULT_KAFKA_VERSION,
        cache_dir: Path | None = None,
        heap: str = CLUSTER_HEAP,
        start_timeout: float = 180.0,
        detached: bool = False,
        progress: Progress | None = None,
        customize: Callable[[ClusterNode, int], ClusterNode] | None = None,
    ) -> None:
        if nodes < 1:
            raise LocalStackError(f"a cluster needs at least one node, asked for {nodes}")
        self.data_dir = Path(data_dir).resolve()
        replicas, min_isr = replication_for(nodes)
        ports = {node_id: (free_port(), free_port()) for node_id in range(1, nodes + 1)}
        voters = ",".join(f"{n}@127.0.0.1:{controller}" for n, (_port, controller) in ports.items())
        cluster_id = _random_cluster_id()
        self.nodes: dict[int, LocalKafka] = {}
        for node_id, (port, controller) in ports.items():
            spec = ClusterNode(node_id, controller, voters, cluster_id, replicas, min_isr, FAILOVER)
            if customize is not None:  # listeners and security of a secured cluster
                spec = customize(spec, port)
            self.nodes[node_id] = LocalKafka(
                self.data_dir / f"node-{node_id}", version=version,
                cache_dir=cache_dir or StackSettings().cache_dir, port=port, heap=heap,
                jvm_options=CLUSTER_JVM_OPTIONS, start_timeout=start_timeout, detached=detached,
                progress=progress, node=spec,
            )  # fmt: skip

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes.values())

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes.values() if node.pid is not None]

    def start(self) -> Self:
        """Start every node: all are spawned before any is waited for."""
        with contextlib.ExitStack() as undo:
            for node in self.nodes.values():
                undo.callback(node.stop)
            self._start_all(self.nodes.values())
            undo.pop_all()
        return self

    def _start_all(self, nodes: Iterable[LocalKafka]) -> None:
        nodes = list(nodes)
        for node in nodes:  # spawned from this thread: PR_SET_PDEATHSIG follows the forking thread
            node.start(wait=False)
        errors: list[BaseException] = []

        def wait(node: LocalKafka) -> None:
            try:
                node.wait_ready()
            except BaseException as error:  # reported below, with the others
                errors.append(error)

        # Each node is ready only once a quorum is: wait for them side by side.
        threads = [threading.Thread(target=wait, args=(node,)) for node in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every node at once: stopped one after another, the last ones wait out
        their timeout, their controlled shutdown asking a quorum that is gone."""
        threads = [threading.Thread(target=node.stop, args=(timeout,)) for node in self.nodes.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (a crash); ``start_node`` brings it back on its data dir."""
        self.nodes[node_id].kill()

    def start_node(self, node_id: int) -> None:
        self.nodes[node_id].start()

    def restart_node(self, node_id: int) -> None:
        """A rolling-restart step: controlled shutdown (SIGTERM), then start."""
        self.nodes[node_id].stop()
        self.nodes[node_id].start()

    def running(self) -> list[int]:
        return [node_id for node_id, node in self.nodes.items() if node.pid is not None]

    def active_controller(self) -> int | None:
        """The node leading the KRaft quorum, from the ``quorum-state`` file each live node
        keeps (the highest epoch's leader); None when no node knows one."""
        best: tuple[int, int] | None = None
        for node_id in self.running():
            path = self.nodes[node_id].data_dir / "logs" / "__cluster_metadata-0" / "quorum-state"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            leader, epoch = state.get("leaderId", -1), state.get("leaderEpoch", -1)
            if leader > 0 and (best is None or epoch > best[1]):
                best = (leader, epoch)
        return best[0] if best else None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def partition_leader(admin: object, topic: str, partition: int, timeout_s: float = 10.0) -> int:
    """The broker id leading ``topic``/``partition`` now (metadata request; -1: none)."""
    metadata = admin.list_topics(topic, timeout=timeout_s)  # type: ignore[attr-defined]
    return int(metadata.topics[topic].partitions[partition].leader)
