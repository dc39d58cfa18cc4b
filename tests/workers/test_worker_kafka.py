"""The worker loop on the real broker, against a scripted orchestrator (grants or
rejects claims and collects the worker's commands)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from taskplane.contract.messages import (
    Assignment,
    ClaimTask,
    CompleteTask,
    FailTask,
    RecordToolCall,
    ReleaseLease,
    RenewLease,
    WorkItem,
)
from taskplane.contract.plan import (
    AgentPlan,
    ExecutionPolicy,
    Isolation,
    SystemPlan,
    ToolPlan,
)
from taskplane.streams.offsets import committed_offsets
from taskplane.streams.serde import Serde, new_meta
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.workers.sdk import Registry
from taskplane.workers.settings import WorkerSettings
from taskplane.workers.worker import Worker
from tests.workers import sample_tools

PLAN = SystemPlan("echo-system", "1", (AgentPlan("echoer", "m1", (ToolPlan("test.echo", 5_000, 0, Isolation.PROCESS,
                                                                         3, 1_000),), ()),), ExecutionPolicy())


class ScriptedOrchestrator:
    def __init__(self, kafka_config: dict[str, Any], topics: Topics, grant: bool, answer_claims: bool = True) -> None:
        self.commands: list[Any] = []
        self._topics, self._grant, self._serde = topics, grant, Serde()
        self._answer_claims = answer_claims
        self._stop = threading.Event()
        self._producer = Producer({**kafka_config, "partitioner": "murmur2_random"})
        self._consumer = Consumer({**kafka_config, "group.id": f"{topics.prefix}.scripted",
                                   "auto.offset.reset": "earliest"})
        self._consumer.subscribe([topics.commands])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def produce(self, topic: str, key: str, value: Any) -> None:
        meta = new_meta(key, type(value).__name__, int(time.time() * 1000))
        self._producer.produce(topic, self._serde.encode(value, meta), key)
        self._producer.flush(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.2)
            if message is None or message.error() or message.value() is None:
                continue
            command = self._serde.decode(message.value())[1]
            self.commands.append(command)
            if isinstance(command, ClaimTask) and self._answer_claims:
                self.produce(self._topics.inbox, command.worker_id, Assignment(
                    command.worker_id, command.run_id, command.task, command.attempt, self._grant,
                    None if self._grant else "already leased", 3, 0, 3_000, "echo-system", "m1", '"hello"', {}, ()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _wait(condition: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.kafka
@pytest.mark.parametrize("grant", [True, False])
def test_the_worker_claims_runs_after_the_grant_and_commits_the_offset(
        kafka_config: dict[str, Any], unique_prefix: str, grant: bool) -> None:
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog(2, 1))
    orchestrator = ScriptedOrchestrator(dict(kafka_config), topics, grant)
    worker = Worker(dict(kafka_config), topics, "echo-system", Registry.from_module(sample_tools),
                    WorkerSettings(worker_id=f"w-{unique_prefix}", concurrency=2, claim_timeout_s=10), plan=PLAN)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        orchestrator.produce(topics.work, "r1/other", WorkItem("r1", "other-system", "echoer", 1))
        orchestrator.produce(topics.work, "r1/echoer", WorkItem("r1", "echo-system", "echoer", 1))
        if grant:
            _wait(lambda: any(isinstance(c, CompleteTask) for c in orchestrator.commands))
            kinds = [type(c).__name__ for c in orchestrator.commands if type(c).__name__ != "RenewLease"]
            assert kinds == ["ClaimTask", "RecordToolCall", "RecordToolCall", "CompleteTask"]
            records = [c for c in orchestrator.commands if isinstance(c, RecordToolCall)]
            assert all(r.epoch == 3 and r.ok for r in records)
        else:
            # The worker commits a work record once it is done with it (here: after the
            # rejection), so once both are committed nothing more can come for them.
            group = f"{unique_prefix}.workers.echo-system"
            _wait(lambda: sum(committed_offsets(dict(kafka_config), group, topics.work).values()) == 2)
            assert [type(c).__name__ for c in orchestrator.commands] == ["ClaimTask"]
        assert len([c for c in orchestrator.commands if isinstance(c, ClaimTask)]) == 1  # other system skipped
    finally:
        worker.stop()
        runner.join(30)
        orchestrator.close()
    # Both work records are committed: a new worker of the group gets nothing to claim.
    check = Consumer({**kafka_config, "group.id": f"{unique_prefix}.workers.echo-system"})
    committed = check.committed([tp for tp in _work_partitions(check, topics.work)], timeout=10)
    check.close()
    assert sum(max(tp.offset, 0) for tp in committed) == 2


def _work_partitions(consumer: Consumer, topic: str) -> list[Any]:
    from confluent_kafka import TopicPartition

    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    return [TopicPartition(topic, p) for p in partitions]


@pytest.mark.kafka
@pytest.mark.parametrize("follow_on_grants", [True, False])
def test_a_grant_no_claim_waits_for_is_run_and_completions_offer_free_slots(
        kafka_config: dict[str, Any], unique_prefix: str, follow_on_grants: bool) -> None:
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog(2, 1))
    orchestrator = ScriptedOrchestrator(dict(kafka_config), topics, grant=True)
    worker_id = f"w-{unique_prefix}"
    worker = Worker(dict(kafka_config), topics, "echo-system", Registry.from_module(sample_tools),
                    WorkerSettings(worker_id=worker_id, concurrency=2, follow_on_grants=follow_on_grants), plan=PLAN)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        # A follow-on grant: the orchestrator granted a downstream task with the completion.
        orchestrator.produce(topics.inbox, worker_id, Assignment(
            worker_id, "r2", "echoer", 1, True, None, 5, 0, 3_000, "echo-system", "m1", '"hi"', {}, ()))
        _wait(lambda: any(isinstance(c, CompleteTask) for c in orchestrator.commands))
        kinds = [type(c).__name__ for c in orchestrator.commands if type(c).__name__ != "RenewLease"]
        assert kinds == ["RecordToolCall", "RecordToolCall", "CompleteTask"]  # no claim: the lease is ours
        [done] = [c for c in orchestrator.commands if isinstance(c, CompleteTask)]
        assert (done.run_id, done.epoch) == ("r2", 5)
        # Idle with 2 slots: the freed slot plus the free one are offered, or none when off.
        assert done.follow_on == (2 if follow_on_grants else 0)
    finally:
        worker.stop()
        runner.join(30)
        orchestrator.close()


def _grant(worker_id: str, run_id: str, task: str, epoch: int, run_input: str) -> Assignment:
    return Assignment(worker_id, run_id, task, 1, True, None, epoch, 0, 3_000, "echo-system", "m1", run_input, {}, ())


@pytest.mark.kafka
def test_async_agents_run_at_once_on_the_workers_event_loop(kafka_config: dict[str, Any], unique_prefix: str) -> None:
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog(2, 1))
    orchestrator = ScriptedOrchestrator(dict(kafka_config), topics, grant=True)
    worker_id = f"w-{unique_prefix}"
    worker = Worker(dict(kafka_config), topics, "echo-system", Registry.from_module(sample_tools),
                    WorkerSettings(worker_id=worker_id, concurrency=4), plan=PLAN)
    sample_tools.ASYNC_THREADS.clear()
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        # Each attempt ends only once all four have started: one loop thread runs them at once.
        for n in range(4):
            orchestrator.produce(topics.inbox, worker_id, _grant(worker_id, f"r{n}", "together", 5, "4"))
        _wait(lambda: len([c for c in orchestrator.commands if isinstance(c, CompleteTask)]) == 4)
        done = [c for c in orchestrator.commands if isinstance(c, CompleteTask)]
        assert sorted(c.run_id for c in done) == ["r0", "r1", "r2", "r3"]
        assert set(sample_tools.ASYNC_THREADS) == {"agents-echo-system"}
        assert not [c for c in orchestrator.commands if isinstance(c, FailTask)]
    finally:
        worker.stop()
        runner.join(30)
        orchestrator.close()


@pytest.mark.kafka
def test_a_stopping_worker_cancels_an_async_attempt_past_the_grace_and_releases_its_lease(
        kafka_config: dict[str, Any], unique_prefix: str) -> None:
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog(2, 1))
    orchestrator = ScriptedOrchestrator(dict(kafka_config), topics, grant=True)
    worker_id = f"w-{unique_prefix}"
    worker = Worker(dict(kafka_config), topics, "echo-system", Registry.from_module(sample_tools),
                    WorkerSettings(worker_id=worker_id, concurrency=2, shutdown_grace_s=1), plan=PLAN)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        orchestrator.produce(topics.inbox, worker_id, _grant(worker_id, "r9", "sleeper", 8, "null"))
        _wait(lambda: any(isinstance(c, RenewLease) for c in orchestrator.commands))  # it runs, renewed
        worker.stop()
        runner.join(30)
        assert not runner.is_alive()
        _wait(lambda: any(isinstance(c, ReleaseLease) for c in orchestrator.commands))
        [released] = [c for c in orchestrator.commands if isinstance(c, ReleaseLease)]
        assert (released.run_id, released.task, released.epoch) == ("r9", "sleeper", 8)
        assert not worker.outcomes  # cancelled: neither completed nor failed
    finally:
        worker.stop()
        runner.join(30)
        orchestrator.close()


@pytest.mark.kafka
def test_a_claim_waiting_for_its_answer_holds_no_slot(kafka_config: dict[str, Any], unique_prefix: str) -> None:
    """While a claim waits (here: forever), its slot is still offered for follow-on grants."""
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog(2, 1))
    orchestrator = ScriptedOrchestrator(dict(kafka_config), topics, grant=True, answer_claims=False)
    worker_id = f"w-{unique_prefix}"
    # A short grace: the claim never answered holds the stopping worker for all of it.
    worker = Worker(dict(kafka_config), topics, "echo-system", Registry.from_module(sample_tools),
                    WorkerSettings(worker_id=worker_id, concurrency=2, shutdown_grace_s=1), plan=PLAN)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        orchestrator.produce(topics.work, "r1/echoer", WorkItem("r1", "echo-system", "echoer", 1))
        _wait(lambda: any(isinstance(c, ClaimTask) for c in orchestrator.commands))
        orchestrator.produce(topics.inbox, worker_id, _grant(worker_id, "r2", "echoer", 5, '"hi"'))
        _wait(lambda: any(isinstance(c, CompleteTask) for c in orchestrator.commands))
        [done] = [c for c in orchestrator.commands if isinstance(c, CompleteTask)]
        assert done.follow_on == 2  # its own slot and the one the waiting claim does not hold
    finally:
        worker.stop()
        runner.join(30)
        orchestrator.close()
