"""The worker's Kafka adapters: a command sender that confirms each record, the inbox
reader that routes Assignments to waiting claims, and in-order offset bookkeeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from taskplane.contract.messages import Assignment
from taskplane.contract.permits import PermitDenied, PermitGranted
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import SerdeError, StreamsError
from taskplane.streams.partitioning import partition_for
from taskplane.streams.poison import poison_headers
from taskplane.streams.serde import Serde, new_meta

log = logging.getLogger(__name__)

ClaimKey = tuple[str, str, int]  # run_id, task, attempt
_LEADERLESS = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                         KafkaError.UNKNOWN_TOPIC_OR_PART})


class Delivery:
    """One produced command; ``wait`` returns once the broker has it, or raises.
    Made with an event loop, ``confirmed`` is the same for a coroutine on that loop."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop | None = None,
                 settled: list[Delivery] | None = None) -> None:
        self._name = name
        # A thread waits on an event, a coroutine on a future; never both (an event per
        # awaited delivery was 8 % of a busy agent loop's time).
        self._done = threading.Event() if loop is None else None
        self._failure: str | None = None
        self._loop = loop
        self._future: asyncio.Future[None] | None = None if loop is None else loop.create_future()
        self._settled = settled  # where the delivery thread collects those a loop waits on

    def delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failure = error.str()
        if self._done is not None:
            self._done.set()
        if self._settled is not None:
            self._settled.append(self)

    @staticmethod
    def settle(deliveries: list[Delivery]) -> None:
        """On their loop: wake the coroutines awaiting ``confirmed``."""
        for delivery in deliveries:
            future = delivery._future
            if future is not None and not future.done():
                future.set_result(None)

    async def confirmed(self) -> None:
        """No timer of its own (a timer per attempt was a tenth of the agent loop's time):
        the producer reports every record, delivered or failed, within its
        ``message.timeout.ms``."""
        assert self._future is not None, "made without an event loop"
        await self._future
        if self._failure is not None:
            raise StreamsError(f"{self._name} not delivered: {self._failure}", retryable=True)

    @property
    def failure(self) -> str | None:
        """Why the broker did not take it; None while unknown or once delivered."""
        return self._failure

    def wait(self, timeout_s: float = 30.0) -> None:
        assert self._done is not None, "made with an event loop: await confirmed()"
        if not self._done.wait(timeout_s):
            raise StreamsError(f"{self._name} not delivered after {timeout_s}s", retryable=True)
        if self._failure is not None:
            raise StreamsError(f"{self._name} not delivered: {self._failure}", retryable=True)


class CommandSender:
    """Produces commands keyed by run id, in order per run (idempotent producer).
    ``send`` waits for the write; ``send_later`` returns the ``Delivery`` to wait on
    when it matters. One thread serves the producer's delivery reports for every
    waiter (each waiter polling the producer itself was a quarter of a busy worker's
    Python time: py-spy, docs/benchmarks.md)."""

    def __init__(self, kafka_config: dict[str, Any], topic: str, serde: Serde, key_of: Any = None) -> None:
        self._topic = topic
        self._serde = serde
        self._key_of = key_of  # the record key of a command (default: its run id)
        # One request in flight: what is produced meanwhile goes in the next request, so a
        # busy worker sends few, full requests (each one costs the broker and the
        # orchestrator's consumer) while an idle one sends at once. A millisecond of linger:
        # completions of a run's parallel tasks that end together go in one request, so the
        # orchestrator decides them in one transaction. Below 1 ms librdkafka's broker
        # thread spins on the timer (15 % of a busy worker); above, each hop pays it.
        # (docs/benchmarks.md, "Async agents, one request in flight")
        self._producer = kafka_clients.producer(kafka_config, linger_ms=1, partitioner="murmur2_random",
                                                tuning={"max.in.flight.requests.per.connection": 1})
        self._closed = threading.Event()
        self._settled: list[Delivery] = []  # only the delivery thread touches it
        self._poller = threading.Thread(target=self._serve, name=f"deliveries-{topic}", daemon=True)
        self._poller.start()

    def send(self, command: Any, timeout_s: float = 30.0) -> None:
        self.send_later(command).wait(timeout_s)

    def send_later(self, command: Any, loop: asyncio.AbstractEventLoop | None = None) -> Delivery:
        """Produce ``command``; from a coroutine, pass its running loop to await
        ``Delivery.confirmed``."""
        now_ms = int(time.time() * 1000)
        key: str = command.run_id if self._key_of is None else self._key_of(command)
        name = type(command).__name__
        payload = self._serde.encode(command, new_meta(key, name, now_ms, correlation_id=key))
        delivery = Delivery(name, loop, None if loop is None else self._settled)
        self._producer.produce(self._topic, payload, key, timestamp=now_ms, on_delivery=delivery.delivered)
        return delivery

    def set_aside(self, poison_topic: str, record: Message, error: Exception, processor: str) -> None:
        """``record`` (its bytes as they were) on ``poison``, with where it came from and why."""
        def delivered(failure: KafkaError | None, _message: Message) -> None:
            if failure is not None:
                log.error("poison record of %s@%s not written: %s", record.partition(), record.offset(), failure.str())

        self._producer.produce(poison_topic, record.value(), record.key(),
                               headers=poison_headers(record, error, processor), on_delivery=delivered)

    def close(self) -> None:
        self._closed.set()
        self._poller.join(5)
        self._producer.flush(10)

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.2)
            if self._settled:  # one wake-up of each loop for all the reports this poll served
                settled, self._settled[:] = self._settled[:], []
                loops: dict[asyncio.AbstractEventLoop, list[Delivery]] = {}
                for delivery in settled:
                    assert delivery._loop is not None
                    loops.setdefault(delivery._loop, []).append(delivery)
                for loop, deliveries in loops.items():
                    with contextlib.suppress(RuntimeError):  # the loop closed at shutdown: nobody waits
                        loop.call_soon_threadsafe(Delivery.settle, deliveries)


class Inbox:
    """Reads this worker's inbox partition from its end (no group), and hands each
    Assignment addressed to this worker to the claim waiting for it."""

    def __init__(self, kafka_config: dict[str, Any], topic: str, worker_id: str, serde: Serde,
                 on_unclaimed: Any = None, on_permit: Any = None) -> None:
        self._worker_id = worker_id
        self._worker_key = worker_id.encode()
        self._serde = serde
        self._waiting: dict[ClaimKey, queue.Queue[Assignment]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._on_unclaimed = on_unclaimed
        self._on_permit = on_permit  # the tool governor's answers (workers/permits.py)
        self._topic = topic
        self.broker_away = threading.Event()  # librdkafka said all brokers are down; cleared by a probe
        self._last_probe = 0.0
        self._consumer = kafka_clients.consumer(kafka_config, f"inbox-{worker_id}", start="latest",
                                                error_cb=self._on_error, tuning=kafka_clients.FOLLOWING)
        partitions = self._consumer.list_topics(topic, timeout=30).topics[topic].partitions
        if not partitions:
            raise StreamsError(f"topic {topic} does not exist (run `taskplane topics create`)")
        partition = partition_for(worker_id, len(partitions))
        # An explicit start offset read now: a claim sent after this returns cannot miss its answer.
        high = self._end_offset(TopicPartition(topic, partition), 30.0)
        self._consumer.assign([TopicPartition(topic, partition, high)])
        self._thread = threading.Thread(target=self._read, name=f"inbox-{worker_id}", daemon=True)
        self._thread.start()

    def _end_offset(self, partition: TopicPartition, timeout_s: float) -> int:
        """The partition's end; a topic created a moment ago may have no leader yet."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return int(self._consumer.get_watermark_offsets(partition, timeout=timeout_s)[1])
            except KafkaException as error:
                if error.args[0].code() not in _LEADERLESS or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def expect(self, key: ClaimKey) -> queue.Queue[Assignment]:
        """Register before sending the claim; the queue receives the answer."""
        box: queue.Queue[Assignment] = queue.Queue(1)
        with self._lock:
            self._waiting[key] = box
        return box

    def forget(self, key: ClaimKey) -> None:
        with self._lock:
            self._waiting.pop(key, None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _on_error(self, error: KafkaError) -> None:  # served by poll, on the reader thread
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.broker_away.set()

    def _probe(self) -> None:
        """While the broker is away: one metadata round trip a second tells it is back."""
        if time.monotonic() - self._last_probe < 1.0:
            return
        self._last_probe = time.monotonic()
        try:
            self._consumer.list_topics(self._topic, timeout=1.0)
        except KafkaException:
            return
        self.broker_away.clear()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                if self.broker_away.is_set():
                    self._probe()
                first = self._consumer.poll(0.2)
                if first is None:
                    continue
                # and what the same commit made visible: routed together, started together
                # (consume() alone would wait for a full batch)
                for message in [first, *self._consumer.consume(500, 0)]:
                    self._receive(message)
        finally:
            self._consumer.close()

    def _receive(self, message: Message) -> None:
        payload = None if message.error() is not None else message.value()
        if payload is None or message.key() != self._worker_key:  # bytes: any key, never a decode error
            return
        try:
            _meta, value = self._serde.decode(payload)
        except SerdeError as error:
            log.warning("inbox: undecodable record at offset %s: %s", message.offset(), error)
            return
        if isinstance(value, Assignment) and value.worker_id == self._worker_id:
            self._route(value)
        elif isinstance(value, PermitGranted | PermitDenied) and self._on_permit is not None:
            self._on_permit(value)

    def _route(self, assignment: Assignment) -> None:
        with self._lock:
            box = self._waiting.pop((assignment.run_id, assignment.task, assignment.attempt), None)
            if box is None and not assignment.granted:
                # A refusal comes from CommandRejected, which carries no attempt: at most
                # one claim per (run, task) is in flight here, so match on those.
                waiting = next((k for k in self._waiting if k[:2] == (assignment.run_id, assignment.task)), None)
                if waiting is not None:
                    box = self._waiting.pop(waiting)
        if box is not None:
            box.put(assignment)
        elif self._on_unclaimed is not None:
            self._on_unclaimed(assignment)


class OffsetTracker:
    """Offsets of work records per partition, in flight or answered; the committable
    offset is the first one still in flight (or one past the last answered)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[int, set[int]] = {}
        self._highest: dict[int, int] = {}
        self._committed: dict[int, int] = {}

    def started(self, partition: int, offset: int) -> None:
        with self._lock:
            self._in_flight.setdefault(partition, set()).add(offset)
            self._highest[partition] = max(offset, self._highest.get(partition, -1))

    def answered(self, partition: int, offset: int) -> None:
        with self._lock:
            self._in_flight.get(partition, set()).discard(offset)

    def drop(self, partitions: list[int]) -> None:
        with self._lock:
            for partition in partitions:
                self._in_flight.pop(partition, None)
                self._highest.pop(partition, None)
                self._committed.pop(partition, None)

    def committable(self) -> dict[int, int]:
        """Partition → next offset to commit, for partitions that moved since last time."""
        moved: dict[int, int] = {}
        with self._lock:
            for partition, highest in self._highest.items():
                pending = self._in_flight.get(partition)
                offset = min(pending) if pending else highest + 1
                if offset > self._committed.get(partition, -1):
                    moved[partition] = offset
                    self._committed[partition] = offset
        return moved
