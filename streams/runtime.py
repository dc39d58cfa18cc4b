"""The transactional processor runtime: one short loop, generic over a decider.

poll ``read_committed`` → decode → decide/evolve → produce events, derived records
and changed state → ``send_offsets_to_transaction`` → commit. One transaction per
batch, bounded by records and milliseconds. Kill -9 anywhere loses nothing and
duplicates nothing: outputs, changelog and input offsets commit together or not at
all, and a restarted instance with the same ``instance_id`` fences its predecessor.

Nothing about DAGs, leases or breakers lives here; see ``processors/``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from taskplane.contract.decider import Decider, Hints, step
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import KafkaIOError, SerdeError, StreamsError
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.poison import decoded_input, poison_headers
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.serde import SCHEMA_VERSION, Meta, Serde
from taskplane.streams.topics import Topics, TopicSpec, ensure_topics
from taskplane.streams.transactions import (
    ProducerFenced as ProducerFenced,  # re-exported: run_until_signalled callers catch it here
)
from taskplane.streams.transactions import (
    Recovery,
    StopRequested,
    TransactionalProducer,
    TransactionWedged,
)

log = logging.getLogger(__name__)

S = TypeVar("S")
C = TypeVar("C")
E = TypeVar("E")

# How long the rewind waits for committed() before asking whether the broker answers.
# A pending offset commit nothing completes (see _unstick) makes it wait out its whole
# deadline: the call timeout (5 s) was most of a broker restart's 6.4-7.2 s resumes.
# Answered in milliseconds otherwise; a slow answer costs one harmless repair.
REWIND_COMMITTED_S = 1.5
# How often an idle processor checks that its group's committed offsets are readable: a
# pending offset commit nothing completes leaves its consumer without positions, idle
# and without an error (the broker-restart wedge, docs/failover.md).
IDLE_OFFSETS_CHECK_S = 5.0


class Companion(Protocol):
    """Something a processor needs running while it runs (a global table it reads)."""

    def start(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    """Where a processor reads and writes, by catalog role."""

    name: str  # consumer group and transactional id stem
    input: str
    events: str
    changelog: str
    changelog_spec: TopicSpec | None = None  # recreated from this when it was deleted
    inputs: tuple[type, ...] = ()  # the messages its decider takes; any other goes to `poison`

    def under(self, topics: Topics) -> ProcessorSpec:
        """This spec with the prefix in its group and transactional ids, so two
        prefixes on one cluster never fence each other."""
        return replace(self, name=f"{topics.prefix}.{self.name}")


@dataclass(slots=True)
class _Deadlines:
    """Keys by the log time they are due at: a dict plus a lazily invalidated heap."""

    at: dict[str, int] = field(default_factory=dict)
    heap: list[tuple[int, str]] = field(default_factory=list)

    def set(self, key: str, deadline: int | None) -> None:
        if deadline is None:
            self.at.pop(key, None)
        elif self.at.get(key) != deadline:
            self.at[key] = deadline
            heapq.heappush(self.heap, (deadline, key))

    def earliest(self) -> int | None:
        while self.heap:
            deadline, key = self.heap[0]
            if self.at.get(key) == deadline:
                return deadline
            heapq.heappop(self.heap)
        return None

    def due(self, now_ms: int) -> list[str]:
        keys: list[str] = []
        while (deadline := self.earliest()) is not None and deadline <= now_ms:
            _, key = heapq.heappop(self.heap)
            del self.at[key]
            keys.append(key)
        return keys


_ABSENT: Any = object()  # a key the undo log saw without state


@dataclass(slots=True)
class _Partition(Generic[S]):
    states: dict[str, S | None] = field(default_factory=dict)
    timers: _Deadlines = field(default_factory=_Deadlines)  # live keys' timers
    retiring: _Deadlines = field(default_factory=_Deadlines)  # finished keys' retirement
    dirty: set[str] = field(default_factory=set)  # keys whose state the open batch changed
    # What the open batch replaced, per key: (state, timer, retirement) as last committed.
    # A failed batch puts them back instead of re-reading the changelog (docs/failover.md).
    undo: dict[str, tuple[Any, int | None, int | None]] = field(default_factory=dict)
    first_offset: int | None = None  # the open batch's first input record here
    hints: Hints[S, Any, Any] | None = None  # this partition's, kept and undone with its state

    def remember(self, key: str) -> None:
        if key not in self.undo:
            self.undo[key] = (self.states.get(key, _ABSENT), self.timers.at.get(key), self.retiring.at.get(key))

    def roll_back(self) -> None:
        """Every key the open batch changed, as it was before it."""
        for key, (state, timer, retire_at) in self.undo.items():
            if state is _ABSENT:
                self.states.pop(key, None)
            else:
                self.states[key] = state
            self.timers.set(key, timer)
            self.retiring.set(key, retire_at)
        self.undo.clear()
        self.dirty.clear()
        if self.hints is not None:
            self.hints.roll_back()

    def committed(self) -> None:
        self.undo.clear()
        self.first_offset = None
        if self.hints is not None:
            self.hints.commit()

    def earliest(self) -> int | None:
        times = [t for t in (self.timers.earliest(), self.retiring.earliest()) if t is not None]
        return min(times, default=None)

    def due(self, now_ms: int) -> list[str]:
        keys = self.timers.due(now_ms)
        retiring = [key for key in self.retiring.due(now_ms) if key not in self.timers.at]
        return sorted({*keys, *retiring}) if retiring else keys


class ProcessorRuntime(Generic[S, C, E]):
    """Runs one decider over one input topic with exactly-once outputs."""

    def __init__(
        self,
        decider: Decider[S, C, E],
        spec: ProcessorSpec,
        kafka_config: dict[str, Any],
        topics: Topics,
        settings: RuntimeSettings | None = None,
        serde: Serde | None = None,
        observer: RuntimeObserver | None = None,
        companions: Sequence[Companion] = (),
        hints: Callable[[], Hints[S, C, E]] | None = None,
    ) -> None:
        self._decider = decider
        self._hints = hints  # makes an assigned partition's hint source
        self._companions = tuple(companions)
        self._spec = spec
        self._kafka = dict(kafka_config)
        self._topics = topics
        self._settings = settings or RuntimeSettings()
        self._serde = serde or Serde()
        self._observer = observer or RuntimeObserver()
        self._observes_events = type(self._observer).event is not RuntimeObserver.event
        self._tick_type = type(decider.tick(0))
        self._input = topics.name(spec.input)
        self._events = topics.name(spec.events)
        self._changelog = topics.name(spec.changelog)
        self._partitions: dict[int, _Partition[S]] = {}
        self._output_topics: dict[str, str] = {}
        self._encoders: dict[type, tuple[Callable[..., bytes], str]] = {}
        self._restore_group = f"{spec.name}-restore"
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None  # the transactional handle's current producer
        self._transactions: TransactionalProducer | None = None
        self._ready = threading.Event()
        self._producer_stale = False  # the broker went away since this producer was made
        self._consumer_generation = 0  # callbacks of a replaced consumer are ignored
        self._fatal: KafkaError | None = None
        self._last_probe = 0.0
        self._last_offsets_check = 0.0
        self._offsets_unreadable = 0  # idle checks in a row that could not read them
        self._ticks_held_until = 0.0  # after an outage, commands queued by clients land first
        self._restore_failed = False  # an assignment's restore failed: rewind before the next batch
        self._last_tick_check = 0.0
        self._next_id: Callable[[], str] = self._new_ids()

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and leave the group."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def ready(self) -> bool:
        """True while the broker answers and the last transaction committed: what a
        /readyz endpoint reports. False from the first sign of an outage until the next
        commit (or, when idle, a metadata round trip) after the broker is back."""
        return self._ready.is_set()

    def states(self) -> dict[str, S | None]:
        """A snapshot of every key's state on the partitions this instance owns."""
        return {k: v for p in self._partitions.values() for k, v in p.states.items()}

    def run(self) -> None:
        """Process until ``stop()``. Leaves with a ``StreamsError`` only: Kafka's own
        errors are wrapped here as ``KafkaIOError`` (``retryable`` from librdkafka)."""
        try:
            # Subscribed first: the group hands over a dead predecessor's partitions (after
            # its session) while the plan table catches up and init_transactions aborts
            # what the predecessor left open; the assignment is taken at the first poll.
            self._consumer = self._subscribed_consumer()
            for companion in self._companions:  # e.g. the plan table restored states reference
                companion.start()
            self._transactions = TransactionalProducer(self._spec.name, self._new_producer,
                                                       self._settings.call_timeout_ms / 1000, self._stop,
                                                       init_patience_s=self._settings.transaction_timeout_ms / 1000)
            self._producer = self._transactions.producer
        except BaseException as error:
            _close_quietly(self._consumer, self._spec.name)  # leaves the group it just joined
            if isinstance(error, KafkaException):
                raise KafkaIOError.wrap(error, f"{self._spec.name}: cannot start") from error
            raise
        self._observer.started(self._spec.name)
        self._set_ready(True)
        try:
            while not self._stop.is_set():
                self._step()
        except StopRequested:
            log.warning("%s: stopped while the broker was away; nothing uncommitted is kept", self._spec.name)
        except ProducerFenced:
            log.error("%s: fenced by a newer instance; stopping", self._spec.name)
            raise
        except KafkaException as error:
            raise KafkaIOError.wrap(error, self._spec.name) from error
        finally:
            self._set_ready(False)
            self._close()

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()  # leaves the group; revocation runs first
            except KafkaException as error:
                log.warning("consumer close: %s", error)
        if self._transactions is not None:
            self._transactions.close()
        for companion in self._companions:
            companion.close()
        self._observer.stopped(self._spec.name)

    # ------------------------------------------------------------ the loop

    def _step(self) -> None:
        assert self._consumer is not None and self._transactions is not None
        if self._fatal is not None:
            raise ProducerFenced(f"fatal client error: {self._fatal}")
        records = self._poll_batch()
        if self._restore_failed:
            # Partitions assigned without their state: the batch is dropped, the rewind
            # restores what is missing and reads from the committed offsets again.
            self._restore_failed = False
            self._set_ready(False)
            self._rewind_until_done({})
            return
        ticks = self._due_ticks()
        if not records and not ticks:
            self._probe()
            self._check_offsets()
            return
        started = time.perf_counter()
        if self._producer_stale:
            self._producer_stale = False
            self._transactions.renew()
            self._producer = self._transactions.producer
        self._next_id = self._new_ids()
        offsets: dict[int, int] = {}  # per partition, the offset after the batch's last record
        try:
            self._transactions.begin()
            self._process(records, offsets)
            self._produce_ticks(ticks)
            self._flush_changelog()
            # Offsets last: their round trips overlap the produce requests (offsets first
            # was measured slower, docs/runtime.md).
            positions = [TopicPartition(self._input, p, o) for p, o in offsets.items()]
            self._transactions.commit(positions, self._consumer.consumer_group_metadata())
        except (KafkaException, TransactionWedged) as error:
            self._after_failed_transaction(error, offsets)
            return
        for owned in self._partitions.values():
            owned.committed()
        self._set_ready(True)
        self._observer.batch(self._spec.name, len(records), time.perf_counter() - started)

    def _poll_batch(self) -> list[Message]:
        """What is already fetched, up to the batch bound; when nothing is, wait up to
        max_batch_ms for the first record only (consume() would wait for a full batch,
        adding its timeout to every hop of a run's latency)."""
        consumer = self._consumer
        assert consumer is not None
        limit = self._settings.max_batch_records
        records = consumer.consume(limit, 0)
        if not records:
            first = consumer.poll(self._settings.max_batch_ms / 1000)
            if first is None:
                return []
            records = [first, *consumer.consume(limit - 1, 0)] if limit > 1 else [first]
        if self._settings.linger_ms:  # fewer, fuller transactions where latency matters less
            deadline = time.monotonic() + self._settings.linger_ms / 1000
            while len(records) < limit and (remaining := deadline - time.monotonic()) > 0:
                records += consumer.consume(limit - len(records), remaining)
        return records

    def _process(self, records: list[Message], offsets: dict[int, int]) -> None:
        """Apply ``records``, noting in ``offsets`` each owned partition's next input offset."""
        decode = self._serde.decode
        inputs = self._spec.inputs
        tick_type = self._tick_type
        partitions = self._partitions
        dropped = 0
        for record in records:
            if record.error() is not None:
                if record.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(record.error())
                continue
            partition = record.partition()
            owned = partitions.get(partition)
            if owned is None:
                # Revoked while the batch was being polled (a batch takes several consume
                # calls; a rebalance callback runs in any of them): the partition's state is
                # gone, so its records are left, uncommitted, for its next owner.
                dropped += 1
                continue
            offsets[partition] = record.offset() + 1
            if owned.first_offset is None:
                owned.first_offset = record.offset()
            try:
                key, meta, command = decoded_input(decode, record.value(), record.key(), inputs)
            except SerdeError as error:
                self._poison(record, error)
                continue
            if type(command) is tick_type:
                now_ms: int = command.now_ms  # type: ignore[attr-defined]
                for due in owned.due(now_ms):
                    self._apply(owned, partition, due, command, now_ms, meta)
            else:
                self._apply(owned, partition, key, command, record.timestamp()[1], meta)
        if dropped:
            log.info("%s: left %d records of partitions revoked during the batch to their next owner",
                     self._spec.name, dropped)

    def _apply(self, owned: _Partition[S], partition: int, key: str, command: Any, at_ms: int, meta: Meta) -> None:
        decider = self._decider
        state, events, outputs, failure = step(decider, owned.states.get(key), command, at_ms, owned.hints)
        if failure is not None:  # a decider bug must not crash-loop the partition: a rejection
            log.error("%s: decider failed on %s", self._spec.name, type(command).__name__, exc_info=failure)
        if not events:
            return
        produce = self._producer.produce  # type: ignore[union-attr]
        encoders = self._encoders
        cause = meta.message_id
        correlation = meta.correlation_id or key
        events_topic = self._events
        next_id = self._next_id
        for event in events:
            encode, name = encoders.get(type(event)) or self._encoder(type(event))
            try:  # the envelope's fields in schema order: no Meta per event
                value = encode(event, next_id(), key, name, SCHEMA_VERSION, cause, correlation, at_ms)
            except Exception as error:
                raise SerdeError(f"cannot encode {name}: {error!r}") from error
            produce(events_topic, value, key, partition, timestamp=at_ms)
        if self._observes_events:
            for event in events:
                self._observer.event(self._spec.name, event)
        for output in outputs:
            body = output.value
            encode, name = encoders.get(type(body)) or self._encoder(type(body))
            try:
                value = encode(body, next_id(), output.key, name, SCHEMA_VERSION, cause, correlation, at_ms)
            except Exception as error:
                raise SerdeError(f"cannot encode {name}: {error!r}") from error
            produce(self._output_topic(output.topic), value, output.key, timestamp=at_ms)
        owned.remember(key)
        if state is None:  # forgotten: a tombstone on the changelog, nothing kept here
            owned.states.pop(key, None)
            owned.timers.set(key, None)
            owned.retiring.set(key, None)
        else:
            owned.states[key] = state
            deadline = decider.next_deadline(state)
            if deadline is not None or key in owned.timers.at:
                owned.timers.set(key, deadline)
            retire_at = decider.retire_at(state)
            if retire_at is not None or key in owned.retiring.at:
                owned.retiring.set(key, retire_at)
        owned.dirty.add(key)

    @staticmethod
    def _new_ids() -> Callable[[], str]:
        """Message ids for one transaction's events and outputs: a random batch id and a
        sequence number. Unique across the keys one Tick wakes, across instances, and
        across a replay of the same commands; ``causation_id`` links each to its command."""
        batch, sequence = uuid.uuid4().hex, itertools.count()
        return lambda: f"{batch}/{next(sequence)}"

    def _encoder(self, cls: type) -> tuple[Callable[..., bytes], str]:
        entry = self._encoders[cls] = (self._serde.encoder_of(cls), cls.__name__)
        return entry

    def _output_topic(self, role: str) -> str:
        name = self._output_topics.get(role)
        if name is None:
            name = self._output_topics[role] = self._topics.name(role)
        return name

    def _flush_changelog(self) -> None:
        producer = self._producer
        assert producer is not None
        snapshot = self._decider.snapshot
        for partition, owned in self._partitions.items():
            for key in owned.dirty:
                state = owned.states.get(key)
                value = None if state is None else self._serde.encode(snapshot(state), state_meta(key))
                producer.produce(self._changelog, value, key, partition)
            owned.dirty.clear()

    # ------------------------------------------------------------ time

    def _due_ticks(self) -> list[tuple[int, int]]:
        """Partitions whose earliest timer has passed, with the time to tick them at."""
        now = time.time()
        if (now - self._last_tick_check) * 1000 < self._settings.tick_interval_ms:
            return []
        if time.monotonic() < self._ticks_held_until:
            return []
        self._last_tick_check = now
        now_ms = int(now * 1000)
        due = []
        for partition, owned in self._partitions.items():
            earliest = owned.earliest()
            if earliest is not None and earliest <= now_ms:
                due.append((partition, now_ms))
        return due

    def _produce_ticks(self, ticks: Iterable[tuple[int, int]]) -> None:
        producer = self._producer
        assert producer is not None
        for partition, now_ms in ticks:
            command = self._decider.tick(now_ms)
            meta = Meta(
                message_id=f"tick/{self._spec.name}/{partition}/{now_ms}",
                key="",
                type=type(command).__name__,
                schema_version=SCHEMA_VERSION,  # the release writers follow, as for events
                causation_id=None,
                correlation_id=None,
                timestamp_ms=now_ms,
            )
            producer.produce(self._input, self._serde.encode(command, meta), b"", partition, timestamp=now_ms)

    # ------------------------------------------------------------ failures

    def _poison(self, record: Message, error: Exception) -> None:
        producer = self._producer
        assert producer is not None
        producer.produce(
            self._topics.name("poison"),
            record.value(),
            record.key(),
            headers=poison_headers(record, error, self._spec.name),
        )
        self._observer.poison(self._spec.name, record.topic(), str(error))
        log.warning("%s: poison record at %s[%d]@%d: %s", self._spec.name, record.topic(), record.partition(), record.offset(), error)

    def _after_failed_transaction(self, error: KafkaException | TransactionWedged, ends: dict[int, int]) -> None:
        """Kafka's rule (abort, or a new producer, or stop when fenced: streams/transactions.py),
        then the state that ran ahead of the last commit is put back and the input
        rewound; that waits for the broker, not-ready meanwhile."""
        self._set_ready(False)
        assert self._transactions is not None
        if self._transactions.recover(error) is Recovery.RECREATE:
            self._producer_stale = False
        self._producer = self._transactions.producer
        self._rewind_until_done(ends)
        # The clock ran on while the broker was away: a Tick now would expire leases whose
        # renewals sit in the clients' queues, sent on time. Let them land first.
        self._ticks_held_until = time.monotonic() + self._settings.tick_grace_after_failure_ms / 1000
        self._observer.aborted(self._spec.name)

    def _roll_back_and_rewind(self, ends: dict[int, int]) -> None:
        """The input offsets committed with the changelog tell the failed batch's fate per
        partition: still before its first record, it did not commit (its changes are
        undone in memory); at its end, it did (a commit whose reply was lost: kept).
        Anything else (another instance committed meanwhile) restores from the changelog."""
        consumer = self._consumer
        assert consumer is not None
        missing = sorted({tp.partition for tp in consumer.assignment()} - set(self._partitions))
        if missing:  # assigned while a retry served the group, and its restore failed then
            self._restore(missing)
        partitions = list(self._partitions)  # as of now: a retry may have served a rebalance
        if not partitions:
            return
        committed = consumer.committed([TopicPartition(self._input, p) for p in partitions],
                                       min(self._settings.call_timeout_ms / 1000, REWIND_COMMITTED_S))
        unknown = []
        for tp in committed:
            owned = self._partitions.get(tp.partition)
            if owned is None:
                continue
            first = owned.first_offset
            if first is None or tp.offset <= first:
                owned.roll_back()
            elif tp.offset == ends.get(tp.partition):
                owned.committed()
            else:
                unknown.append(tp.partition)
            owned.first_offset = None
        if unknown:
            log.warning("%s: partitions %s moved on without this instance; restoring them", self._spec.name, unknown)
            self._restore(unknown)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(self._input, tp.partition, offset))

    def _rewind_until_done(self, ends: dict[int, int]) -> None:
        """``_roll_back_and_rewind`` until it succeeds (each of its Kafka calls has a
        deadline). While the broker is away the consumer is polled between tries, not
        slept on: a member the broker fenced meanwhile rejoins only through poll (it must
        give up its lost partitions first); records that poll returns are dropped, the
        rewind reads them again. A failure with the broker answering goes to ``_unstick``."""
        failures = 0
        while True:
            try:
                self._roll_back_and_rewind(ends)
                return
            except (KafkaException, StreamsError) as error:
                if self._stop.is_set():
                    raise StopRequested("stopped while waiting for the broker") from error
                log.warning("%s: rewind failed (%s); retrying", self._spec.name, error)
                if self._broker_answers():
                    failures += 1
                    self._unstick(failures)
                else:
                    self._serve_group(0.5)

    def _unstick(self, tries: int) -> None:
        """committed() fails while the broker answers. Seen after broker restarts: an
        abandoned producer's transactional offset commit landed after its successor's
        init had aborted that transaction (librdkafka has no KIP-890), leaving the group
        a pending offset commit nothing completes. committed() asks for stable offsets,
        so it times out, and so does a new member's start. The group's last *stable*
        offsets (read by a fresh client that does not ask for stability) are the truth:
        a transaction of this producer id that stores them again writes the commit
        marker that completes every pending offset commit of the producer id, without
        moving any offset. When that cannot be done or does not help, a new consumer."""
        owned = list(self._partitions)
        if tries <= 2 and owned:
            assert self._transactions is not None and self._consumer is not None
            try:
                stable = [tp for tp in self._stable_offsets(owned) if tp.offset >= 0]
            except KafkaException as error:
                log.warning("%s: the stable offsets are unreadable too: %s", self._spec.name, error)
                stable = []
            if stable:
                log.warning("%s: committed offsets unreadable with the broker answering; storing the stable "
                            "ones %s again", self._spec.name, {tp.partition: tp.offset for tp in stable})
                try:
                    self._transactions.begin()
                    self._transactions.commit(stable, self._consumer.consumer_group_metadata())
                except (KafkaException, TransactionWedged) as error:
                    self._transactions.recover(error)
                    self._producer = self._transactions.producer
                return
        self._renew_consumer(f"committed offsets unreadable after {tries} tries with the broker answering")

    def _check_offsets(self) -> None:
        """Idle and ready: every ``IDLE_OFFSETS_CHECK_S``, that committed() answers. A
        consumer whose group holds a pending offset commit gets no positions, so no
        records, and no error: nothing fails and the rewind's repair never ran (bench.failover
        and a CI run: processors idle for minutes after a broker restart with input
        waiting). The same repair (``_unstick``) runs from here once two checks in a row
        failed with the broker answering, the first of them a whole interval after the
        processor became ready: just after the broker's return a check met a coordinator
        still loading (NOT_COORDINATOR), which passes by itself, and a repair then only
        cost a rebalance (bench.failover: 7.2-7.4 s to resume instead of ~1.7 s)."""
        now = time.monotonic()
        if not self._partitions or not self._ready.is_set() or now - self._last_offsets_check < IDLE_OFFSETS_CHECK_S:
            return
        assert self._consumer is not None
        try:
            self._consumer.committed([TopicPartition(self._input, p) for p in self._partitions], REWIND_COMMITTED_S)
        except KafkaException as error:
            if self._broker_answers():
                self._offsets_unreadable += 1
                log.warning("%s: idle, and the committed offsets are unreadable with the broker answering (%s)%s",
                            self._spec.name, error, "" if self._offsets_unreadable > 1 else "; checking again")
                if self._offsets_unreadable > 1:
                    self._unstick(self._offsets_unreadable - 1)
        else:
            self._offsets_unreadable = 0
        self._last_offsets_check = time.monotonic()

    def _stable_offsets(self, partitions: list[int]) -> list[TopicPartition]:
        """The group's committed input offsets, pending transactional ones ignored."""
        reader = kafka_clients.consumer(self._kafka, self._group_id, committed_only=False)
        try:
            return list(reader.committed([TopicPartition(self._input, p) for p in partitions],
                                         self._settings.call_timeout_ms / 1000))
        finally:
            _close_quietly(reader, self._spec.name)

    @property
    def _group_id(self) -> str:
        return self._settings.group_id or self._spec.name

    def _broker_answers(self) -> bool:
        try:
            kafka_clients.admin(self._kafka).list_topics(self._input, timeout=self._settings.call_timeout_ms / 1000)
        except KafkaException:
            return False
        return True

    def _renew_consumer(self, why: str) -> None:
        """A new consumer in the group, the old one dropped with its partitions' state
        (restored from the changelog on the new assignment). Seen once in 12 broker
        restarts: after the return, committed() on the old consumer timed out for minutes
        while a fresh client read the same group's offsets at once."""
        log.warning("%s: %s; re-creating the consumer", self._spec.name, why)
        old = self._consumer
        self._consumer_generation += 1  # before anything: the old one's callbacks go quiet
        self._partitions.clear()
        self._consumer = None
        # Closed, not just dropped: a live handle keeps heartbeating and holds the
        # partitions. Its close may hang, so it gets a deadline on a thread of its own.
        closing = threading.Thread(target=_close_quietly, args=(old, self._spec.name), daemon=True)
        closing.start()
        closing.join(self._settings.call_timeout_ms / 1000)
        if closing.is_alive():
            log.warning("%s: the old consumer did not close in time; its partitions move at its session's end",
                        self._spec.name)
        self._consumer = self._subscribed_consumer()

    def _subscribed_consumer(self) -> Consumer:
        generation = self._consumer_generation

        def current(callback: Callable[..., None]) -> Callable[..., None]:
            return lambda *args: callback(*args) if generation == self._consumer_generation else None

        consumer = self._new_consumer(current(self._on_consumer_error))
        consumer.subscribe([self._input], on_assign=current(self._on_assign), on_revoke=current(self._on_revoke))
        return consumer

    def _serve_group(self, timeout_s: float) -> None:
        assert self._consumer is not None
        try:
            self._consumer.poll(timeout_s)
        except (KafkaException, StreamsError) as error:  # a rebalance callback's restore failed
            log.warning("%s: serving the group: %s", self._spec.name, error)
            self._stop.wait(timeout_s)

    # ------------------------------------------------------------ readiness

    def _set_ready(self, ready: bool) -> None:
        if ready != self._ready.is_set():
            (self._ready.set if ready else self._ready.clear)()
            # The idle offsets check counts failures within one stretch of readiness, and
            # leaves the first seconds after a return to the coordinators' loading.
            self._offsets_unreadable = 0
            self._last_offsets_check = time.monotonic()
            log.info("%s: %s", self._spec.name, "ready" if ready else "not ready")
            self._observer.readiness(self._spec.name, ready)

    def _on_consumer_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (served by poll): all brokers down means not ready."""
        if error.fatal():
            self._fatal = error  # e.g. a static member fenced by a newer instance with its id
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._producer_stale = True
            self._set_ready(False)

    def _on_producer_error(self, error: KafkaError) -> None:
        # A fatal producer error surfaces from the next transactional call, and an
        # abandoned producer's errors must not stop the runtime: only readiness here.
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._producer_stale = True
            self._set_ready(False)

    def _probe(self) -> None:
        """Idle and not ready: one metadata round trip a second tells when the broker is back."""
        if self._ready.is_set() or time.monotonic() - self._last_probe < 1.0:
            return
        self._last_probe = time.monotonic()
        assert self._consumer is not None
        try:
            self._consumer.list_topics(self._input, timeout=1.0)
        except KafkaException:
            return
        self._set_ready(True)

    # ------------------------------------------------------------ rebalance

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        log.info("%s: assigned %s", self._spec.name, numbers)
        self._observer.assigned(self._spec.name, numbers)
        try:
            self._restore(numbers)
        except (KafkaException, StreamsError) as error:  # the broker went away mid-read: not fatal
            log.warning("%s: restoring %s failed (%s); retried before the next batch", self._spec.name, numbers, error)
            self._restore_failed = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches commit before consume() returns, so no transaction is open here.
        for tp in partitions:
            self._partitions.pop(tp.partition, None)
        log.info("%s: revoked %s", self._spec.name, [tp.partition for tp in partitions])

    def _restore(self, partitions: list[int]) -> None:
        if not partitions:
            return
        started = time.perf_counter()
        hints = self._hints
        restored = {p: _Partition[S](hints=None if hints is None else hints()) for p in partitions}
        decider = self._decider
        if self._changelog_exists():
            stored: dict[int, dict[str, bytes]] = {p: {} for p in partitions}
            for partition, key, value in read_to_end(self._kafka, self._changelog, partitions, self._restore_group):
                if value is None:
                    stored[partition].pop(key, None)
                else:
                    stored[partition][key] = value
            for partition, values in stored.items():  # decoded once per key, not per write
                restored[partition].states = {
                    key: decider.restored(self._serde.decode(value)[1]) for key, value in values.items()
                }
        else:
            log.warning("%s: changelog %s missing; folding %s", self._spec.name, self._changelog, self._events)
            self._recreate_changelog()
            for partition, key, value in read_to_end(self._kafka, self._events, partitions, self._restore_group):
                if value is None:
                    continue
                states = restored[partition].states
                state = decider.evolve(states.get(key), self._serde.decode(value)[1])  # type: ignore[arg-type]
                if state is None:
                    states.pop(key, None)
                else:
                    states[key] = state
            for owned in restored.values():  # re-seed the new changelog with the next commit
                owned.dirty.update(owned.states)
        for owned in restored.values():
            for key, state in owned.states.items():
                owned.timers.set(key, decider.next_deadline(state))
                owned.retiring.set(key, decider.retire_at(state))
        self._partitions.update(restored)
        count = sum(len(p.states) for p in restored.values())
        self._observer.restored(self._spec.name, count, time.perf_counter() - started)
        log.info("%s: restored %d keys on %s in %.3fs", self._spec.name, count, partitions, time.perf_counter() - started)

    def _changelog_exists(self) -> bool:
        topics = kafka_clients.admin(self._kafka).list_topics(self._changelog, timeout=self._settings.call_timeout_ms / 1000).topics
        return self._changelog in topics and not topics[self._changelog].error

    def _recreate_changelog(self) -> None:
        if self._spec.changelog_spec is not None:
            ensure_topics(kafka_clients.admin(self._kafka), self._topics, [self._spec.changelog_spec])

    # ------------------------------------------------------------ config

    def _new_producer(self) -> Producer:
        return kafka_clients.transactional_producer(
            self._kafka, f"{self._spec.name}-{self._settings.instance_id}",
            transaction_timeout_ms=self._settings.transaction_timeout_ms, linger_ms=5,
            partitioner="murmur2_random", error_cb=self._on_producer_error,
            tuning={
                # Back-to-back transactions meet CONCURRENT_TRANSACTIONS while the previous
                # commit markers are written; the default 100 ms retry backoff added that to
                # every hop of a run (measured: 130-200 ms per DAG level).
                "retry.backoff.ms": 5,
                "retry.backoff.max.ms": 100,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
            })

    def _new_consumer(self, error_cb: Callable[[KafkaError], None]) -> Consumer:
        session = ({"session.timeout.ms": self._settings.session_timeout_ms}
                   if self._settings.group_protocol == "classic" else {})
        return kafka_clients.consumer(
            self._kafka, self._group_id, start="earliest", protocol=self._settings.group_protocol,
            error_cb=error_cb,
            tuning={
                **session,
                # A busy processor fetches again once it has taken what it fetched. With
                # librdkafka's default (keep 100,000 records queued) its fetch sat at the log's
                # end and every record produced answered it: at saturation a fetch per
                # submitted run, a third of the broker's requests. Past 50 queued records the
                # partitions' fetches back off (1 ms, a local check) and the records wait on
                # the broker for one fetch. 50, not 1: the threshold is the consumer's whole
                # queue but is checked per partition, and a partition left out of a fetch
                # waits for that fetch's answer; at light load the queue stays below 50, so
                # no partition is left out (with 1, one run in 200-400 waited 0.5 s).
                "queued.min.messages": 50,
                "fetch.queue.backoff.ms": 1,
                # How long the broker holds a fetch that finds nothing. A record (or the commit
                # marker that makes it readable) answers a held fetch at once, so this costs no
                # latency, except to a busy partition left out of it (above): that waits at
                # most this long. Shorter only multiplies idle fetches (50 ms: 20 a second).
                "fetch.wait.max.ms": 100,
            })


def _close_quietly(consumer: Consumer | None, name: str) -> None:
    if consumer is not None:
        try:
            consumer.close()
        except (KafkaException, RuntimeError) as error:
            log.warning("%s: closing the old consumer: %s", name, error)


def state_meta(key: str) -> Meta:
    """Fixed envelope for state snapshots, so equal states encode to equal bytes."""
    return Meta(
        message_id=key, key=key, type="state", schema_version=1, causation_id=None, correlation_id=None, timestamp_ms=0
    )


EXIT_FENCED = 3


def run_until_signalled(runtime: ProcessorRuntime[Any, Any, Any], on_ready: Callable[[], None] | None = None) -> None:
    """Run with SIGTERM/SIGINT ending in a final commit (the pod's main). A fenced
    instance (a newer one took its transactional id) exits with EXIT_FENCED, no traceback."""
    runtime.install_signal_handlers()
    if on_ready is not None:
        on_ready()
    try:
        runtime.run()
    except ProducerFenced as error:
        print(f"fenced: another instance with the same instance id took over ({error}); exiting", flush=True)
        raise SystemExit(EXIT_FENCED) from None
