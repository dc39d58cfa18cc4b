"""The processes of bench.kafka_floor's minimal pipeline, in plain confluent-kafka (no
taskplane runtime): the processor P and the worker W, each run as its own process
(``python -m bench._floor_roles processor|worker ...``), and the topics they share.

One task per run. The client submits to ``in``; P turns a submit into a grant on
``work`` and a completion from ``done`` into a result on ``out``; W turns a grant into a
completion. The client settings are taskplane's (streams/runtime_clients.py,
workers/_kafka.py, the Publisher) so that what differs from taskplane is the flow alone.

Variants of P:
- ``eos``: consume-transform-produce in Kafka transactions (one transactional id per
  instance, the input offsets committed in the transaction with the consumer's group
  metadata: KIP-447 fencing), a batch of whatever arrived per transaction;
- ``eos+changelog``: the same, plus one compacted changelog record per decision, as
  taskplane's orchestrator writes its run state;
- ``at-least-once``: no transactions: idempotent produce, flush, then commit offsets.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

VARIANTS = ("eos", "eos+changelog", "at-least-once")
ROLES = ("in", "work", "done", "out", "changelog")
PARTITIONS = 4  # as taskplane's run topics (streams/topics.py)
QUIET = {"log_level": 3}  # librdkafka's notices off stderr, as taskplane's clients


def topic(prefix: str, role: str) -> str:
    return f"{prefix}.{role}"


def create_topics(kafka: Mapping[str, Any], prefix: str) -> None:
    """The pipeline's topics, 4 partitions each; the changelog compacted."""
    admin = AdminClient({**kafka, **QUIET})
    wanted = [NewTopic(topic(prefix, role), PARTITIONS, 1,
                       config={"cleanup.policy": "compact"} if role == "changelog" else {}) for role in ROLES]
    for future in admin.create_topics(wanted).values():
        future.result(30)


def idempotent_producer(kafka: Mapping[str, Any], linger_ms: int) -> Producer:
    return Producer({**kafka, **QUIET, "acks": "all", "enable.idempotence": True, "linger.ms": linger_ms,
                     "partitioner": "murmur2_random"})


def group_consumer(kafka: Mapping[str, Any], group: str, **tuning: Any) -> Consumer:
    """A KIP-848 group member reading committed records from the start, as taskplane's."""
    return Consumer({**kafka, **QUIET, "group.id": group, "group.protocol": "consumer",
                     "isolation.level": "read_committed", "auto.offset.reset": "earliest", **tuning})


def take_batch(consumer: Consumer, wait_s: float) -> list[Message]:
    """Whatever has arrived: the first record (waiting up to ``wait_s``), then what is
    already queued (``consume`` with a timeout would wait for a full batch)."""
    first = consumer.poll(wait_s)
    if first is None:
        return []
    batch = [first, *consumer.consume(4_999, 0)]
    return [m for m in batch if m.error() is None]


def next_offsets(batch: list[Message]) -> list[TopicPartition]:
    """The input position after the batch, for the partitions it read only."""
    ends: dict[tuple[str, int], int] = {}
    for message in batch:
        key = (message.topic(), message.partition())
        ends[key] = max(ends.get(key, -1), message.offset() + 1)
    return [TopicPartition(t, p, offset) for (t, p), offset in ends.items()]


class Processor:
    """P: decides on each submit (a grant) and each completion (the result), keeping
    which runs are open so that a repeated completion gives no second result."""

    def __init__(self, kafka: Mapping[str, Any], prefix: str, variant: str) -> None:
        self.prefix, self.variant = prefix, variant
        self.transactional = variant != "at-least-once"
        # taskplane's processor input (runtime_clients._new_consumer): held fetches of 500 ms,
        # a fetch again only once the queue drains below 50.
        self.consumer = group_consumer(kafka, f"{prefix}.processor", **{
            "enable.auto.commit": False, "queued.min.messages": 50, "fetch.queue.backoff.ms": 1,
            "fetch.wait.max.ms": 500})
        if self.transactional:  # taskplane's transactional producer (runtime_clients._new_producer)
            self.producer = Producer({**kafka, **QUIET, "transactional.id": f"{prefix}.processor-0",
                                      "transaction.timeout.ms": 30_000, "linger.ms": 5, "retry.backoff.ms": 5,
                                      "retry.backoff.max.ms": 100, "partitioner": "murmur2_random"})
            self.producer.init_transactions(60)
        else:
            self.producer = idempotent_producer(kafka, 5)
        self.consumer.subscribe([topic(prefix, "in"), topic(prefix, "done")])
        self.open_runs: set[str] = set()

    def step(self, wait_s: float = 0.5) -> int:
        batch = take_batch(self.consumer, wait_s)
        if not batch:
            return 0
        if self.transactional:
            self.producer.begin_transaction()
        for message in batch:
            self.decide(message)
        if self.transactional:
            self.producer.send_offsets_to_transaction(next_offsets(batch), self.consumer.consumer_group_metadata())
            self.producer.commit_transaction()
        else:
            self.producer.flush()  # the outputs are durable before the input is marked read
            self.consumer.commit(offsets=next_offsets(batch), asynchronous=True)
        return len(batch)

    def decide(self, message: Message) -> None:
        key, value = message.key(), message.value()
        run = json.loads(value or b"{}")
        if message.topic() == topic(self.prefix, "in"):
            if run["run"] in self.open_runs:
                return
            self.open_runs.add(run["run"])
            self.producer.produce(topic(self.prefix, "work"), value, key)
            state = b"granted"
        else:
            if run["run"] not in self.open_runs:
                return  # a completion seen again (a worker's retry): no second result
            self.open_runs.discard(run["run"])
            self.producer.produce(topic(self.prefix, "out"), value, key)
            state = b"done"
        if self.variant == "eos+changelog":
            self.producer.produce(topic(self.prefix, "changelog"), state, key)


class Worker:
    """W: runs each granted task (a no-op that stamps its own end time) and reports the
    completion, at least once (the processor drops repeats)."""

    def __init__(self, kafka: Mapping[str, Any], prefix: str) -> None:
        self.prefix = prefix
        # librdkafka's default fetch wait (500 ms) and offset auto-commit (every 5 s)
        self.consumer = group_consumer(kafka, f"{prefix}.workers")
        self.consumer.subscribe([topic(prefix, "work")])
        self.producer = idempotent_producer(kafka, 1)  # as taskplane's worker (workers/_kafka.py)

    def step(self, wait_s: float = 0.5) -> int:
        batch = take_batch(self.consumer, wait_s)
        for message in batch:
            run = json.loads(message.value() or b"{}")
            run["end"] = time.time()
            self.producer.produce(topic(self.prefix, "done"), json.dumps(run).encode(), message.key())
        if batch:
            self.producer.flush()
        return len(batch)


class FloorClient:
    """Submits with an idempotent producer (flushed per submit, as bench.peers' taskplane
    submitter) and follows ``out`` read_committed (no group: it assigns itself)."""

    def __init__(self, kafka: dict[str, Any], prefix: str) -> None:
        self._out, self._in = topic(prefix, "out"), topic(prefix, "in")
        self._producer = idempotent_producer(kafka, 5)
        self._consumer = Consumer({**kafka, **QUIET, "group.id": f"{prefix}.client", "enable.auto.commit": False,
                                   "isolation.level": "read_committed", "fetch.wait.max.ms": 2_000})
        self._consumer.assign([TopicPartition(self._out, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        self.ends: dict[str, tuple[float, float]] = {}  # run -> (task end, result read)
        self.submitted: dict[str, float] = {}  # run -> submit time, in submit order
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="floor-results", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stopping.is_set():
            batch = take_batch(self._consumer, 0.5)
            if batch:
                now = time.time()
                with self._changed:
                    for message in batch:
                        run = json.loads(message.value() or b"{}")
                        self.ends[run["run"]] = (float(run["end"]), now)
                    self._changed.notify_all()

    def submit(self, index: int) -> str:
        run = uuid.uuid4().hex
        self.submitted[run] = time.time()
        self._producer.produce(self._in, json.dumps({"run": run, "index": index}).encode(), run.encode())
        self._producer.flush()
        return run

    def wait(self, runs: Sequence[str], timeout_s: float) -> list[tuple[float, float]]:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while missing := sum(1 for run in runs if run not in self.ends):
                if not self._changed.wait(max(0.0, deadline - time.monotonic())) and time.monotonic() > deadline:
                    raise TimeoutError(f"{missing} of {len(runs)} runs unfinished after {timeout_s:.0f}s")
            return [self.ends[run] for run in runs]

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._consumer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a process of bench.kafka_floor's pipeline")
    parser.add_argument("role", choices=("processor", "worker"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--variant", choices=VARIANTS, default="eos")
    args = parser.parse_args(argv)
    kafka = {"bootstrap.servers": args.bootstrap}
    role: Processor | Worker = (Processor(kafka, args.prefix, args.variant) if args.role == "processor"
                                else Worker(kafka, args.prefix))
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    print(f"{args.role} ready", flush=True)
    while not stopping:
        role.step()
    role.consumer.close()
    role.producer.flush(5)


if __name__ == "__main__":
    main()
