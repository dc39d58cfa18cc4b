"""Dropped transaction markers, reproduced on a real two-node cluster, the sweep that
settles them (streams/sweep.py), and the broker version that does not drop them.

From Kafka 4.3.0 (the metadata cache rewritten in Java; KAFKA-20734, apache/kafka#22680)
the transaction coordinator, sending a completed transaction's markers, takes a partition
whose leader is offline for a deleted one ("Couldn't find leader endpoint ... likely
deleted already and hence can be skipped", KAFKA-5202) and completes the transaction
without its markers there. 4.2.2 (the default broker) queues them until a leader returns. A partition whose only replica sits on a fenced broker has no
leader. The transaction's records there stay open under its producer id, and so does its
offset commit in the group's ``__consumer_offsets`` partition: that partition's last stable
offset stops below them (read_committed readers see nothing past it), the group's
committed() times out, and the next transaction of the same producer id that commits there
commits the orphans with its own records. A CI chaos run met this after a broker restart:
one event twice.

Deterministic, no kill timing: node 1 is the only controller and leads the transaction
coordinator's partition; node 2 is a broker only and leads the output partition and the
group's offsets partition (replication 1 everywhere). The transaction writes to both, node 2
is SIGSTOPped, and it commits once the controller has fenced node 2 (2 s broker session):
the coordinator, on node 1, finds no leader for either partition and drops both markers.
With the group's offsets on node 1 instead, only the output's marker is dropped: a case
the sweep's trigger (pending offsets) does not see (the xfail test at the end). These run
on ``MARKER_DROPPING_KAFKA_VERSION``; the last test runs the same commit on the default
broker and finds the markers written once node 2 leads again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic, OffsetSpec

from taskplane.devstack.cluster import LocalKafkaCluster, partition_leader
from taskplane.devstack.kafka import ClusterNode, dropped_markers
from taskplane.streams import kafka_clients
from taskplane.streams.settings import MARKER_DROPPING_KAFKA_VERSION, StackSettings
from taskplane.streams.sweep import settle_orphans

pytestmark = pytest.mark.kafka

CONTROLLER, BROKER = 1, 2  # node 1: controller and broker; node 2: broker only
CALL_S = 30.0
INPUT_OFFSET = 5  # the offset the transaction stores for the group's input partition
NO_DROP_S = 3.0  # how long a broker that keeps markers is watched for a drop


def _two_nodes(spec: ClusterNode, port: int) -> ClusterNode:
    """Node 1 the only voter: stopping node 2 leaves a quorum to fence it. Replication 1:
    each partition has one replica, so node 2's are leaderless while it is fenced."""
    spec = dataclasses.replace(spec, voters=spec.voters.split(",")[0], replication=1, min_insync=1)
    if spec.node_id == CONTROLLER:
        return spec
    return dataclasses.replace(spec, overrides={**spec.overrides, "process.roles": "broker",
                                                "listeners": f"PLAINTEXT://127.0.0.1:{port}"})


def _two_node_cluster(version: str) -> Iterator[LocalKafkaCluster]:
    """This module's own two nodes: stopping one must not disturb the session's broker."""
    settings = StackSettings()
    data_dir = Path(tempfile.mkdtemp(prefix="taskplane-test-markers-"))
    nodes = LocalKafkaCluster(data_dir / "kafka", nodes=2, version=version,
                              cache_dir=settings.cache_dir, start_timeout=300, customize=_two_nodes).start()
    try:
        _create_internal_topics(nodes)
        yield nodes
    finally:
        nodes.stop(timeout=1)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalKafkaCluster]:
    """Two nodes of the newest release that drops markers (the sweep's tests)."""
    yield from _two_node_cluster(MARKER_DROPPING_KAFKA_VERSION)


@pytest.fixture(scope="module")
def default_cluster() -> Iterator[LocalKafkaCluster]:
    """Two nodes of the broker version taskplane runs by default."""
    yield from _two_node_cluster(StackSettings().local_kafka_version)


def _config(cluster: LocalKafkaCluster, servers: str | None = None) -> dict[str, Any]:
    return StackSettings().kafka_config(servers or cluster.bootstrap_servers, {"log_level": 3})


def _wait(what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """``check()``'s first truthy answer; a KafkaException counts as not yet."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            if answer := check():
                return answer
            last = answer
        except KafkaException as error:
            last = error
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s (last: {last})")


def _create_internal_topics(cluster: LocalKafkaCluster) -> None:
    """Both nodes are up: ``__transaction_state`` and ``__consumer_offsets`` get partitions
    on each (the coordinator ids of the tests are picked from where they landed)."""
    config = _config(cluster)
    producer = kafka_clients.transactional_producer(config, "markers-warm-up", transaction_timeout_ms=60_000)
    producer.init_transactions(CALL_S)
    admin = kafka_clients.admin(config)
    _wait("a group coordinator", lambda: admin.describe_consumer_groups(["markers-warm-up"])
          ["markers-warm-up"].result(CALL_S))


def _java_hash(text: str) -> int:
    """Java's ``String.hashCode``: over UTF-16 code units, in 32-bit two's complement."""
    value, units = 0, text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        value = (31 * value + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _coordinator_partition(key: str, partitions: int) -> int:
    """Kafka's ``Utils.abs(key.hashCode()) % partitions``: the partition of
    ``__transaction_state`` / ``__consumer_offsets`` a transactional id / group lives in."""
    value = _java_hash(key)
    return (0 if value == -(1 << 31) else abs(value)) % partitions


def _key_led_by(cluster: LocalKafkaCluster, internal_topic: str, node: int, prefix: str) -> str:
    admin = kafka_clients.admin(_config(cluster))
    partitions = admin.list_topics(internal_topic, timeout=CALL_S).topics[internal_topic].partitions
    leaders = {number: partition.leader for number, partition in partitions.items()}
    assert node in leaders.values(), f"{internal_topic} has no partition on node {node}: {leaders}"
    return next(key for key in (f"{prefix}-{i}" for i in range(1000))
                if leaders[_coordinator_partition(key, len(leaders))] == node)


@dataclasses.dataclass
class Orphan:
    """A committed transaction whose markers the coordinator dropped."""

    transactional_id: str
    group: str
    output: str  # one partition, on node 2
    input: str  # the group's input partition (on node 1), its offset stored by the transaction
    offset: int  # of the orphaned record in ``output``


def _admin_of_node_1(cluster: LocalKafkaCluster) -> Any:
    """A fresh client whose first questions go to node 1, whose metadata (the controller's
    and the coordinator's) is the truth here: a client that knew node 2 could ask it while
    it is stopped, or just after, when it still has itself lead at the old leader epoch."""
    return kafka_clients.admin(_config(cluster, f"127.0.0.1:{cluster.nodes[CONTROLLER].port}"))


def _leader_seen_by_node_1(cluster: LocalKafkaCluster, topic: str) -> int:
    return partition_leader(_admin_of_node_1(cluster), topic, 0, 2.0)


def _offsets(cluster: LocalKafkaCluster, topic: str) -> tuple[int, int]:
    """(last stable offset, high watermark) of ``topic``'s partition 0, asked with node 1's
    leader epoch. A fresh client each time: one that cached the leader epoch before node
    2's return kept getting FENCED_LEADER_EPOCH for ListOffsets (librdkafka 2.16)."""
    admin = _admin_of_node_1(cluster)
    partition = TopicPartition(topic, 0)
    found = []
    for isolation in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED):
        answer = admin.list_offsets({partition: OffsetSpec.latest()}, isolation_level=isolation)
        found.append(answer[partition].result(CALL_S).offset)
    return found[0], found[1]


def _settled(cluster: LocalKafkaCluster, topic: str, past: int) -> bool:
    """No open transaction left on ``topic``'s partition 0 (its last stable offset is its
    end), which has grown past ``past``."""
    stable, end = _offsets(cluster, topic)
    return stable == end > past


def _read_committed(cluster: LocalKafkaCluster, topic: str) -> list[bytes]:
    """Every value read_committed reads of ``topic``'s partition 0 up to its end."""
    consumer = kafka_clients.consumer(_config(cluster), "markers-reader", start="earliest", eof=True)
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + CALL_S
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                assert message.error().code() == -191, message.error()  # _PARTITION_EOF
                return values
            values.append(message.value() or b"")
        raise AssertionError(f"no end of {topic} within {CALL_S:.0f} s, read {values}")
    finally:
        consumer.close()


def _committed(cluster: LocalKafkaCluster, orphan: Orphan, *, stable: bool, timeout_s: float) -> int:
    """The group's committed input offset. ``stable`` (as every read_committed consumer
    asks, the runtime's too) waits for pending transactional offset commits."""
    consumer = kafka_clients.consumer(_config(cluster), orphan.group, committed_only=stable)
    try:
        return int(consumer.committed([TopicPartition(orphan.input, 0)], timeout_s)[0].offset)
    finally:
        consumer.close()


def _group_metadata(cluster: LocalKafkaCluster, group: str) -> Any:
    consumer = kafka_clients.consumer(_config(cluster), group)
    try:
        return consumer.consumer_group_metadata()
    finally:
        consumer.close()


def _drop_markers(cluster: LocalKafkaCluster, name: str, group_node: int = BROKER, *,
                  expect_drop: bool = True) -> Orphan:
    """A transaction committed while node 2 (the output's leader and, by default, the
    group's coordinator) is fenced. ``expect_drop``: the coordinator dropped its markers
    there, so its record in the output partition and its offset commit stay open; else it
    logged no drop within ``NO_DROP_S``."""
    transactional_id = _key_led_by(cluster, "__transaction_state", CONTROLLER, f"{name}-tx")
    group = _key_led_by(cluster, "__consumer_offsets", group_node, f"{name}-group")
    orphan = Orphan(transactional_id, group, f"{name}.output", f"{name}.input", 0)
    config = _config(cluster)
    admin = kafka_clients.admin(config)
    for topic, node in ((orphan.output, BROKER), (orphan.input, CONTROLLER)):
        admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[node]])])[topic].result(CALL_S)
    _wait(f"{orphan.output} led by node {BROKER}", lambda: partition_leader(admin, orphan.output, 0) == BROKER)
    described = _wait("the group's coordinator", lambda: admin.describe_consumer_groups([group])[group].result(CALL_S))
    assert described.coordinator.id == group_node, f"group {group}'s coordinator is node {described.coordinator.id}"

    producer = kafka_clients.transactional_producer(config, transactional_id, transaction_timeout_ms=60_000)
    producer.init_transactions(CALL_S)
    producer.begin_transaction()
    producer.produce(orphan.output, b"orphan", b"k", partition=0)
    group_metadata = _group_metadata(cluster, group)
    producer.send_offsets_to_transaction([TopicPartition(orphan.input, 0, INPUT_OFFSET)], group_metadata, CALL_S)
    assert producer.flush(CALL_S) == 0
    pid = cluster.nodes[BROKER].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        _wait(f"node {BROKER} fenced", lambda: _leader_seen_by_node_1(cluster, orphan.output) == -1)
        producer.commit_transaction(CALL_S)
        coordinator = cluster.nodes[CONTROLLER].data_dir

        def dropped_lines() -> list[str]:
            return [line for line in dropped_markers(coordinator) if f"for {transactional_id}," in line]

        if expect_drop:
            dropped = _wait("the coordinator dropping the markers", dropped_lines)
        else:
            time.sleep(NO_DROP_S)  # the dropping versions log it within milliseconds of the commit
            assert dropped_lines() == []
    finally:
        os.kill(pid, signal.SIGCONT)
    if expect_drop:
        assert f"{orphan.output}-0" in dropped[0], dropped
        assert ("__consumer_offsets-" in dropped[0]) == (group_node == BROKER), dropped
    # Node 2 leads again in node 1's metadata (a resumed node 2 first answers from its own,
    # which still has it lead at the old epoch), and answers as leader at the new epoch (it
    # learns of it after node 1: UNKNOWN_LEADER_EPOCH meanwhile).
    _wait(f"node {BROKER} leading {orphan.output} again",
          lambda: _leader_seen_by_node_1(cluster, orphan.output) == BROKER and _offsets(cluster, orphan.output))
    return orphan


def _assert_orphaned(cluster: LocalKafkaCluster, orphan: Orphan) -> None:
    """The record is open: the last stable offset stops at it, read_committed reads nothing,
    and the group's stable offsets are unreadable while its coordinator answers."""
    assert _offsets(cluster, orphan.output) == (orphan.offset, orphan.offset + 1)
    assert _read_committed(cluster, orphan.output) == []
    # The coordinator is back and answers (no stability asked: the pending commit is not read)...
    _wait("the group's offsets, unstable (none stored)",
          lambda: _committed(cluster, orphan, stable=False, timeout_s=5) < 0)
    # ... but a stable read waits for the pending offset commit, which nothing completes.
    with pytest.raises(KafkaException, match="Timed out"):
        _committed(cluster, orphan, stable=True, timeout_s=5)


def _commit_one(cluster: LocalKafkaCluster, orphan: Orphan, value: bytes, *, sweep_first: bool) -> None:
    """The same transactional id again (its next epoch, as a restarted processor): one
    transaction that writes ``value`` and stores the group's input offset, after a sweep
    when ``sweep_first``."""
    config = _config(cluster)
    producer = kafka_clients.transactional_producer(config, orphan.transactional_id, transaction_timeout_ms=60_000)
    producer.init_transactions(CALL_S)
    offsets = [TopicPartition(orphan.input, 0, INPUT_OFFSET)]
    group_metadata = _group_metadata(cluster, orphan.group)
    if sweep_first:
        # The runtime's check after init_transactions (streams/runtime.py): the group's
        # offsets are pending, so it sweeps both topics' partitions and the group's offsets.
        assert settle_orphans(producer, config, orphan.group, orphan.input, [orphan.output, orphan.input],
                              lambda: group_metadata, CALL_S)
        # The abort's markers settle every open record of the producer id there: the last
        # stable offset reaches the end, and the group's offsets are stable again (none).
        _wait("the sweep's markers", lambda: _settled(cluster, orphan.output, past=orphan.offset + 1))
        assert _committed(cluster, orphan, stable=True, timeout_s=CALL_S) < 0
    producer.begin_transaction()
    producer.produce(orphan.output, value, b"k", partition=0)
    producer.send_offsets_to_transaction(offsets, group_metadata, CALL_S)
    producer.commit_transaction(CALL_S)
    _wait("the commit's markers", lambda: _settled(cluster, orphan.output, past=orphan.offset))


def test_dropped_markers_leave_a_record_open_that_the_next_commit_of_its_id_commits(
        cluster: LocalKafkaCluster, unique_prefix: str) -> None:
    """The bug, then its harm: the orphan becomes visible next to the record of the next
    transaction of its transactional id (one event twice, as in the CI run)."""
    orphan = _drop_markers(cluster, unique_prefix)
    _assert_orphaned(cluster, orphan)
    _commit_one(cluster, orphan, b"again", sweep_first=False)
    assert _read_committed(cluster, orphan.output) == [b"orphan", b"again"]
    assert _committed(cluster, orphan, stable=True, timeout_s=CALL_S) == INPUT_OFFSET


def test_a_sweep_aborts_the_orphaned_record_and_offset_commit(
        cluster: LocalKafkaCluster, unique_prefix: str) -> None:
    """The fix: the next epoch's sweep (``settle_orphans``, then ``sweep``) before its first
    transaction aborts the orphan and the pending offset commit; the transaction after it
    is the only one visible."""
    orphan = _drop_markers(cluster, unique_prefix)
    _assert_orphaned(cluster, orphan)
    _commit_one(cluster, orphan, b"again", sweep_first=True)
    assert _read_committed(cluster, orphan.output) == [b"again"]
    assert _committed(cluster, orphan, stable=True, timeout_s=CALL_S) == INPUT_OFFSET


@pytest.mark.xfail(strict=True, reason="settle_orphans sweeps only when the group's offsets are pending: here they "
                   "were committed (their partition had a leader), so nothing settles the open record")
def test_an_orphan_whose_offset_commit_got_its_marker_is_settled_visible(
        cluster: LocalKafkaCluster, unique_prefix: str) -> None:
    """On more nodes than one, a transaction's partitions may lose their leaders apart:
    here the group's offsets partition (node 1) gets its marker and the output partition
    (node 2) does not. The input counts as processed (committed offset 5), so the record
    must become visible, once; an abort would lose it. Until something settles it, every
    read_committed reader of the partition stops at it."""
    orphan = _drop_markers(cluster, unique_prefix, group_node=CONTROLLER)
    assert _offsets(cluster, orphan.output) == (orphan.offset, orphan.offset + 1)
    assert _committed(cluster, orphan, stable=True, timeout_s=CALL_S) == INPUT_OFFSET
    config = _config(cluster)
    producer = kafka_clients.transactional_producer(config, orphan.transactional_id, transaction_timeout_ms=60_000)
    producer.init_transactions(CALL_S)
    settle_orphans(producer, config, orphan.group, orphan.input, [orphan.output, orphan.input],
                   lambda: _group_metadata(cluster, orphan.group), CALL_S)
    _wait("the orphan settled", lambda: _settled(cluster, orphan.output, past=orphan.offset), timeout_s=10)
    assert _read_committed(cluster, orphan.output) == [b"orphan"]


def test_the_default_broker_keeps_the_markers_until_the_leader_returns(
        default_cluster: LocalKafkaCluster, unique_prefix: str) -> None:
    """The same commit on the default broker version: no marker is dropped while node 2 is
    fenced, and once it leads again the record is visible, once, and the group's offsets
    are stable (committed 5) before any later transaction of the id: nothing to sweep."""
    orphan = _drop_markers(default_cluster, unique_prefix, expect_drop=False)
    _wait("the markers, once node 2 leads again",
          lambda: _settled(default_cluster, orphan.output, past=orphan.offset))
    assert _read_committed(default_cluster, orphan.output) == [b"orphan"]
    assert _committed(default_cluster, orphan, stable=True, timeout_s=CALL_S) == INPUT_OFFSET
