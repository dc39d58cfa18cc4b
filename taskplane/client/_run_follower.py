"""One consumer of ``events`` for every run a client watches.

The follower reads every partition from where the topic stood when it started (the
last stable offset: nothing committed later is missed) and hands each record of a
watched run to that run's ``Watch``; records of other runs are skipped by key,
undecoded. A run that may predate the follower (a run id given by the user, a submit
with an idempotency key) is loaded first by a scan of its partition; while it loads,
the follower's records for it wait in the watch, and offsets applied twice are
ignored (``RunView.apply``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from weakref import WeakValueDictionary

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from taskplane.client._run_view import RunView
from taskplane.exceptions import ClientError
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.log_reader import TO_THE_END
from taskplane.streams.partitioning import partition_for
from taskplane.streams.serde import Serde

log = logging.getLogger(__name__)
Listener = Callable[[Any], None]


class Watch:
    """One watched run: its view, the events applied so far, and who to wake."""

    def __init__(self, run_id: str, loaded: bool) -> None:
        self.view = RunView(run_id)
        self.events: list[Any] = []
        self.changed = threading.Condition()
        self.loaded = loaded
        self.load_error: BaseException | None = None
        self._pending: list[tuple[int, Any]] = []
        self._listeners: list[Listener] = []

    def deliver(self, offset: int, event: Any) -> None:
        with self.changed:
            if not self.loaded:
                self._pending.append((offset, event))
                return
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
            self.changed.notify_all()
            self._wake(event)

    def _wake(self, event: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop the follower
                log.exception("run %s: listener failed", self.view.run_id)


class RunFollower:
    def __init__(self, kafka_config: dict[str, Any], topic: str, serde: Serde) -> None:
        self._kafka, self._topic, self._serde = kafka_config, topic, serde
        self._watches: WeakValueDictionary[bytes, Watch] = WeakValueDictionary()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.failure: BaseException | None = None
        self.partitions = _partitions(kafka_config, topic)
        start = _stable_ends(kafka_config, topic, self.partitions)
        self._consumer = Consumer({**kafka_config, "group.id": f"taskplane-client-{uuid.uuid4().hex[:12]}",
                                   "enable.auto.commit": False, "isolation.level": "read_committed"})
        self._consumer.assign([TopicPartition(topic, p, start[p]) for p in self.partitions])
        self._thread = threading.Thread(target=self._follow, name=f"runs-{topic}", daemon=True)
        self._thread.start()

    def watch(self, run_id: str, history: bool) -> Watch:
        """The watch of ``run_id`` (shared by every handle of the run). With
        ``history`` the run may predate the follower: its partition is scanned first."""
        key = run_id.encode()
        with self._lock:
            existing = self._watches.get(key)
            if existing is not None:
                created = None
            else:
                created = existing = Watch(run_id, loaded=not history)
                self._watches[key] = created
        if created is not None and history:
            try:
                created.finish_loading(self._scan(run_id))
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

    def check(self) -> None:
        """Raise when the follower died (a wait would never end)."""
        if self.failure is not None:
            raise ClientError(f"the client's reader of {self._topic} stopped: {self.failure!r}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _follow(self) -> None:
        try:
            while not self._stop.is_set():
                for record in self._consumer.consume(1_000, 0.2):
                    if record.error() is not None:
                        if record.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("%s: %s", self._topic, record.error())
                        continue
                    with self._lock:
                        watch = self._watches.get(record.key() or b"")
                    if watch is not None and record.value() is not None:
                        event = self._decode(record.value())
                        if event is not None:
                            watch.deliver(record.offset(), event)
        except BaseException as error:  # seen by every wait through check()
            log.exception("%s follower stopped", self._topic)
            self.failure = error
        finally:
            self._consumer.close()

    def _scan(self, run_id: str) -> list[tuple[int, Any]]:
        """This run's committed events on its partition, from the start to the end."""
        partition = partition_for(run_id, len(self.partitions))
        key = run_id.encode()
        reader = Consumer({**self._kafka, "group.id": f"taskplane-client-scan-{uuid.uuid4().hex[:12]}",
                           "enable.auto.commit": False, "enable.partition.eof": True,
                           "isolation.level": "read_committed", **TO_THE_END})
        found: list[tuple[int, Any]] = []
        try:
            reader.assign([TopicPartition(self._topic, partition, OFFSET_BEGINNING)])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for record in reader.consume(5_000, 0) or reader.consume(1, 0.5):  # never waits out 0.5 s
                    error = record.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            return found
                        raise KafkaException(error)
                    if record.key() == key and record.value() is not None:
                        event = self._decode(record.value())
                        if event is not None:
                            found.append((record.offset(), event))
            raise ClientError(f"reading run {run_id} from {self._topic}[{partition}] took over 60s")
        except KafkaException as error:
            raise ClientError(f"cannot read {self._topic}: {error}") from error
        finally:
            reader.close()

    def _decode(self, value: bytes) -> Any:
        try:
            return self._serde.decode(value)[1]
        except SerdeError as error:  # the orchestrator's poison handling owns bad records
            log.warning("%s: undecodable record skipped: %s", self._topic, error)
            return None


def _partitions(kafka_config: dict[str, Any], topic: str) -> list[int]:
    try:
        metadata = AdminClient(kafka_config).list_topics(topic, timeout=15).topics.get(topic)
    except KafkaException as error:
        raise ClientError(f"cannot reach Kafka at {kafka_config.get('bootstrap.servers')}: {error}") from error
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise ClientError(f"topic {topic} does not exist (taskplane topics create, or taskplane apply)")
    return sorted(metadata.partitions)


def _stable_ends(kafka_config: dict[str, Any], topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's last stable offset: records of transactions still open sit at
    or after it, so a reader starting there misses nothing that commits later."""
    from confluent_kafka import IsolationLevel

    admin = AdminClient(kafka_config)
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
