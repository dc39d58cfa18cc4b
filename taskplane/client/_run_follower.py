"""One consumer of ``events`` and ``runs`` for every run a client watches.

The follower reads every partition of both topics from where they stood when it
started (the last stable offset: nothing committed later is missed) and hands each
record of a watched run to that run's ``Watch``; records of other runs are skipped by
key, undecoded. No submit and no lookup reads a run's history from ``events``:

- a submit with an idempotency key (whose run id the key determines) is answered by
  the orchestrator: ``RunSubmitted`` when the run is new, else the rejection of the
  duplicate plus the run's ``RunRecord`` on ``runs``, both in one transaction and both
  naming the submit's message id as their cause. Until one of the two comes, the
  watch holds the run's events; then they fold on top of the answer.
- a run id given by the user (``client.run``) is looked up in the ``runs`` index
  (``_run_index.py``): a finished run is its record; a run still going (or whose
  outputs the orchestrator has retired) is read from ``events`` from its submit time
  on (``offsets_for_times``), not from the partition's start. While it loads, the
  follower's records for it wait in the watch, and offsets applied twice are ignored
  (``RunView.apply``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from weakref import WeakValueDictionary

from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from taskplane.client._run_index import RunIndex
from taskplane.client._run_view import TERMINAL, RunView, from_record
from taskplane.contract import messages as m
from taskplane.exceptions import ClientError
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.log_reader import TO_THE_END
from taskplane.streams.partitioning import partition_for
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics

log = logging.getLogger(__name__)
Listener = Callable[[Any], None]


class Watch:
    """One watched run: its view, the events applied so far, and who to wake."""

    def __init__(self, run_id: str, loaded: bool, submit_id: str | None = None) -> None:
        self.view = RunView(run_id)
        self.events: list[Any] = []
        self.offsets: list[int] = []  # of ``events``, in order
        self.seeded = False  # the view started from the run's record: ``events`` lacks its start
        self.changed = threading.Condition()
        self.loaded = loaded
        self.load_error: BaseException | None = None
        self._pending: list[tuple[int, Any]] = []
        self._listeners: list[Listener] = []
        # A keyed submit's watch holds the run's events until the orchestrator answered
        # the submit (message id ``submit_id``): RunSubmitted, or a rejection + record.
        self.submit_id = submit_id
        self._rejected_at: int | None = None
        self._answer: m.RunRecord | None = None

    def deliver(self, offset: int, event: Any, cause: str | None = None) -> None:
        with self.changed:
            if not self.loaded:
                self._pending.append((offset, event))
            elif self.submit_id is not None:
                self._answering(offset, event, cause)
            else:
                self._apply(offset, event)

    def deliver_record(self, record: Any, cause: str | None) -> None:
        """A ``runs`` record of this run: the answer to this watch's submit, or nothing."""
        with self.changed:
            if self.submit_id is not None and cause == self.submit_id and isinstance(record, m.RunRecord):
                self._answer = record
                self._resolve()

    def finish_seeded(self, record: m.RunRecord) -> None:
        """Loaded from the run's index record (a finished run: nothing more comes)."""
        with self.changed:
            self.view, self.seeded = from_record(record), True
            self._pending.clear()
            self.loaded = True
            self.changed.notify_all()
            self._wake(None)

    def _answering(self, offset: int, event: Any, cause: str | None) -> None:
        if isinstance(event, m.RunSubmitted):  # the run's start: from here on, its whole history
            self.submit_id, self._pending = None, []
            self._apply(offset, event)
        elif isinstance(event, m.CommandRejected) and event.command == "SubmitRun" and cause == self.submit_id:
            self._rejected_at, self._pending = offset, []  # what came before is in the answer
            self._resolve()
        else:
            self._pending.append((offset, event))

    def _resolve(self) -> None:
        if self._rejected_at is None or self._answer is None:
            return
        self.view, self.seeded = from_record(self._answer, self._rejected_at + 1), True
        held, self._pending, self.submit_id = self._pending, [], None
        self.changed.notify_all()
        self._wake(None)
        for offset, event in held:
            self._apply(offset, event)

    def finish_loading(self, history: list[tuple[int, Any]]) -> None:
        with self.changed:
            for offset, event in [*history, *self._pending]:
                self._apply(offset, event)
            self._pending.clear()
            self.loaded = True
            self.changed.notify_all()
            self._wake(None)

    def listen(self, listener: Listener) -> None:
        """Call ``listener(event)`` (from the follower's thread) after each new event;
        ``listener(None)`` when loading finished."""
        with self.changed:
            self._listeners.append(listener)

    def unlisten(self, listener: Listener) -> None:
        with self.changed:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _apply(self, offset: int, event: Any) -> None:
        if self.view.apply(offset, event):
            self.events.append(event)
            self.offsets.append(offset)
            self.changed.notify_all()
            self._wake(event)

    def _wake(self, event: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop the follower
                log.exception("run %s: listener failed", self.view.run_id)


class RunFollower:
    def __init__(self, kafka_config: dict[str, Any], topics: Topics, serde: Serde) -> None:
        self._kafka, self._topic, self._runs, self._serde = kafka_config, topics.events, topics.runs, serde
        self._watches: WeakValueDictionary[bytes, Watch] = WeakValueDictionary()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.failure: BaseException | None = None
        self.partitions = _partitions(kafka_config, self._topic)
        runs = _partitions(kafka_config, self._runs)
        self.index = RunIndex(kafka_config, self._runs, len(runs), serde)
        self._consumer = kafka_clients.consumer(kafka_config, f"taskplane-client-{uuid.uuid4().hex[:12]}")
        self._consumer.assign([TopicPartition(topic, p, offset) for topic, partitions in
                               ((self._topic, self.partitions), (self._runs, runs))
                               for p, offset in _stable_ends(kafka_config, topic, partitions).items()])
        self._thread = threading.Thread(target=self._follow, name=f"runs-{self._topic}", daemon=True)
        self._thread.start()

    def watch(self, run_id: str, history: bool, submit_id: str | None = None) -> Watch:
        """The watch of ``run_id`` (shared by every handle of the run). With
        ``history`` the run may predate the follower: it is looked up in the index
        first. ``submit_id``: the message id of a keyed submit about to be sent."""
        key = run_id.encode()
        with self._lock:
            existing = self._watches.get(key)
            if existing is not None:
                created = None
            else:
                created = existing = Watch(run_id, loaded=not history, submit_id=None if history else submit_id)
                self._watches[key] = created
        if created is not None and history:
            try:
                self._load(created)
            except BaseException as error:
                with self._lock:
                    self._watches.pop(key, None)
                with created.changed:
                    created.load_error = error
                    created.changed.notify_all()
                raise
        with existing.changed:  # another thread may still be loading it
            while not existing.loaded:
                self.check()
                if existing.load_error is not None:
                    raise ClientError(f"cannot read run {run_id}: {existing.load_error}")
                existing.changed.wait(0.5)
        return existing

    def reload(self, watch: Watch) -> None:
        """Read the history of a run whose view started from its record (asked for its
        events, or its record had no outputs: the orchestrator retired them), from its
        submit time on; what the follower delivered since is kept."""
        with watch.changed:
            if not watch.seeded:
                return
            run_id, since_ms = watch.view.run_id, watch.view.submitted_ms or 0
        history = self._scan(run_id, since_ms)
        with watch.changed:
            view, events, offsets = RunView(run_id), [], []
            last = history[-1][0] if history else -1
            live = [(o, e) for o, e in zip(watch.offsets, watch.events, strict=True) if o > last]
            for offset, event in [*history, *live]:
                if view.apply(offset, event):
                    events.append(event)
                    offsets.append(offset)
            if view.known:
                watch.view, watch.events, watch.offsets, watch.seeded = view, events, offsets, False
            watch.changed.notify_all()

    def check(self) -> None:
        """Raise when the follower died (a wait would never end)."""
        if self.failure is not None:
            raise ClientError(f"the client's reader of {self._topic} stopped: {self.failure!r}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.index.close()

    def _load(self, watch: Watch) -> None:
        record = self.index.lookup(watch.view.run_id)
        if record is None:
            watch.finish_loading([])  # unknown: not submitted, or not yet decided
        elif record.status in TERMINAL and not (record.retired and record.status == "succeeded"):
            watch.finish_seeded(record)
        else:  # still going (or its outputs retired): its events since its submit
            watch.finish_loading(self._scan(watch.view.run_id, record.submitted_ms or 0))

    def _follow(self) -> None:
        runs = self._runs
        try:
            while not self._stop.is_set():
                # What is fetched already, else the next record: consume(n, t) alone waits
                # out t unless n records come (every answer and result was up to 0.2 s late).
                for record in self._consumer.consume(1_000, 0) or self._consumer.consume(1, 0.2):
                    if record.error() is not None:
                        if record.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("%s: %s", record.topic(), record.error())
                        continue
                    with self._lock:
                        watch = self._watches.get(record.key() or b"")
                    if watch is None or record.value() is None:
                        continue
                    decoded = self._decode(record.value())
                    if decoded is None:
                        continue
                    meta, value = decoded
                    if record.topic() == runs:
                        watch.deliver_record(value, meta.causation_id)
                    else:
                        watch.deliver(record.offset(), value, meta.causation_id)
        except BaseException as error:  # seen by every wait through check()
            log.exception("%s follower stopped", self._topic)
            self.failure = error
        finally:
            self._consumer.close()

    def _scan(self, run_id: str, since_ms: int) -> list[tuple[int, Any]]:
        """This run's committed events on its partition, from its submit time (records
        of ``events`` carry their command's log time) to the end."""
        partition = partition_for(run_id, len(self.partitions))
        key = run_id.encode()
        reader = kafka_clients.consumer(self._kafka, f"taskplane-client-scan-{uuid.uuid4().hex[:12]}", eof=True,
                                        tuning=TO_THE_END)
        found: list[tuple[int, Any]] = []
        try:
            [start] = reader.offsets_for_times([TopicPartition(self._topic, partition, since_ms)], timeout=15)
            if start.error is not None:
                raise KafkaException(start.error)
            # No record that late (-1): nothing of the run is there yet, read from the end.
            reader.assign([TopicPartition(self._topic, partition, start.offset if start.offset >= 0 else OFFSET_END)])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for record in reader.consume(5_000, 0) or reader.consume(1, 0.5):  # never waits out 0.5 s
                    error = record.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            return found
                        raise KafkaException(error)
                    if record.key() == key and record.value() is not None:
                        decoded = self._decode(record.value())
                        if decoded is not None:
                            found.append((record.offset(), decoded[1]))
            raise ClientError(f"reading run {run_id} from {self._topic}[{partition}] took over 60s")
        except KafkaException as error:
            raise ClientError(f"cannot read {self._topic}: {error}") from error
        finally:
            reader.close()

    def _decode(self, value: bytes) -> tuple[Any, Any] | None:
        try:
            return self._serde.decode(value)
        except SerdeError as error:  # the orchestrator's poison handling owns bad records
            log.warning("%s: undecodable record skipped: %s", self._topic, error)
            return None


def _partitions(kafka_config: dict[str, Any], topic: str) -> list[int]:
    try:
        metadata = kafka_clients.admin(kafka_config).list_topics(topic, timeout=15).topics.get(topic)
    except KafkaException as error:
        raise ClientError(f"cannot reach Kafka at {kafka_config.get('bootstrap.servers')}: {error}") from error
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise ClientError(f"topic {topic} does not exist (taskplane topics create, or taskplane apply)")
    return sorted(metadata.partitions)


def _stable_ends(kafka_config: dict[str, Any], topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's last stable offset: records of transactions still open sit at
    or after it, so a reader starting there misses nothing that commits later."""
    from confluent_kafka import IsolationLevel

    admin = kafka_clients.admin(kafka_config)
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + 30
    while True:
        try:
            answers = admin.list_offsets(request, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=15)
            return {tp.partition: future.result().offset for tp, future in answers.items()}
        except KafkaException as error:
            # A topic created a moment ago may still be electing its leaders.
            if not _transient(error.args[0]) or time.monotonic() > deadline:
                raise ClientError(f"cannot read the offsets of {topic}: {error}") from error
            time.sleep(0.2)


_TRANSIENT = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                        KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REQUEST_TIMED_OUT,
                        KafkaError._TIMED_OUT, KafkaError._TRANSPORT})


def _transient(error: KafkaError) -> bool:
    return bool(error.retriable()) or error.code() in _TRANSIENT
