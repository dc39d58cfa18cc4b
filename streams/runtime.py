"""The transactional processor runtime: one short loop, generic over a decider.

poll ``read_committed`` → decode → decide/evolve → produce events, derived records
and changed state → ``send_offsets_to_transaction`` → commit. One transaction per
batch, bounded by records and milliseconds. Kill -9 anywhere loses nothing and
duplicates nothing: outputs, changelog and input offsets commit together or not at
all, and a restarted instance with the same ``instance_id`` fences its predecessor.

The parts (docs/runtime.md): ``batch`` (what one transaction contains), ``apply``
(records through the decider), ``ticks``, ``restore``, ``recovery`` (rewind and
offsets repair), ``runtime_clients`` (the Kafka handles) and ``runtime_state`` (the
states this loop moves through). Nothing about DAGs, leases or breakers lives here;
see ``processors/``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from taskplane.contract.decider import Decider, Hints, SplitState
from taskplane.streams.apply import Applier
from taskplane.streams.batch import Batch
from taskplane.streams.batch import (
    state_meta as state_meta,  # re-exported: where callers have found it
)
from taskplane.streams.exceptions import KafkaIOError, StreamsError
from taskplane.streams.partition_state import PartitionState
from taskplane.streams.recovery import Recoverer
from taskplane.streams.restore import Restorer
from taskplane.streams.runtime_clients import ProcessorClients, close_quietly
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.runtime_state import Event, Lifecycle, Phase
from taskplane.streams.serde import Serde
from taskplane.streams.ticks import Ticker
from taskplane.streams.topics import Topics, TopicSpec, catalog
from taskplane.streams.transactions import (
    ProducerFenced as ProducerFenced,  # re-exported: run_until_signalled callers catch it here
)
from taskplane.streams.transactions import StopRequested, TransactionWedged

log = logging.getLogger(__name__)
# The longest an idle poll waits (no timer due sooner): bounds how late stop() and the
# idle checks run. confluent-kafka wakes a poll every 200 ms anyway (signal checks), but
# in C: what an idle step costs in Python is what this saves (docs/benchmarks.md).
IDLE_POLL_S = 0.5

S = TypeVar("S")
C = TypeVar("C")
E = TypeVar("E")


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
        self._split = decider if isinstance(decider, SplitState) else None  # state stored as parts
        self._companions = tuple(companions)
        self._name = name = spec.name
        self._settings = settings = settings or RuntimeSettings()
        self._serde = serde = serde or Serde()
        self._observer = observer = observer or RuntimeObserver()
        self._input = topics.name(spec.input)
        self._changelog = topics.name(spec.changelog)
        events = topics.name(spec.events)
        # What a transaction of this processor may write: its own topics and any catalog
        # role (a decider's outputs), swept when a broker left a commit half done.
        self._written = sorted({self._input, self._changelog, events, *(topics.name(t.role) for t in catalog())})
        timeout_s = settings.call_timeout_ms / 1000
        self._partitions: dict[int, PartitionState[S]] = {}  # the owned input partitions' state
        self._stop = threading.Event()
        self._lifecycle = Lifecycle(name, lambda ready: observer.readiness(name, ready))
        self._fatal: KafkaError | None = None  # what sent the lifecycle to FAILED
        self._last_probe = 0.0
        self._clients = ProcessorClients(name, dict(kafka_config), settings, self._input)
        self._applier = Applier[S](name, decider, topics, events, serde, observer, spec.inputs)
        self._ticker = Ticker(name, decider.tick, self._input, serde, settings.tick_interval_ms)
        self._restorer = Restorer[S](name, decider, dict(kafka_config), topics, self._changelog, events,
                                     spec.changelog_spec, serde, observer, timeout_s, hints)
        self._recoverer = Recoverer[S](name, self._clients, self._partitions, self._restore, self._input,
                                       timeout_s, self._stop)

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
        return self._lifecycle.ready()

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
            self._clients.subscribe(self._on_assign, self._on_revoke, self._on_consumer_error)
            for companion in self._companions:  # e.g. the plan table restored states reference
                companion.start()
            self._clients.start_transactions(self._stop, self._on_producer_error, self._written)
        except BaseException as error:
            close_quietly(self._clients.consumer, self._name)  # leaves the group it just joined
            if isinstance(error, KafkaException):
                raise KafkaIOError.wrap(error, f"{self._name}: cannot start") from error
            raise
        self._observer.started(self._name)
        self._lifecycle.fire(Event.STARTED)
        try:
            while not self._stop.is_set():
                self._step()
        except StopRequested:
            log.warning("%s: stopped while the broker was away; nothing uncommitted is kept", self._name)
        except ProducerFenced:
            log.error("%s: fenced by a newer instance; stopping", self._name)
            raise
        except KafkaException as error:
            raise KafkaIOError.wrap(error, self._name) from error
        finally:
            self._lifecycle.fire(Event.STOPPED)
            self._clients.close()
            for companion in self._companions:
                companion.close()
            self._observer.stopped(self._name)

    # ------------------------------------------------------------ the loop

    def _step(self) -> None:
        """poll → (a pending rewind, or idle checks) → one transaction."""
        if self._lifecycle.phase is Phase.FAILED:
            raise ProducerFenced(f"fatal client error: {self._fatal}")
        transactions = self._clients.transactions
        if transactions is not None and transactions.take_swept():  # swept by a repair (recovery.unstick)
            self._rewind_after_sweep()
            return
        records = self._poll_batch()
        if self._lifecycle.phase is Phase.RESTORE_PENDING:
            # Partitions assigned without their state: the batch is dropped, the rewind
            # restores what is missing and reads from the committed offsets again.
            self._lifecycle.fire(Event.REWINDING)
            self._recoverer.rewind_until_done(Batch())
            return
        ticks = self._ticker.due(self._partitions)
        if not records and not ticks:
            self._probe()
            self._recoverer.check_offsets(self._lifecycle.ready(), self._lifecycle.readiness_changed_at)
            return
        self._transact(records, ticks)

    def _transact(self, records: list[Message], ticks: list[tuple[int, int]]) -> None:
        """decode → decide/evolve → produce → send offsets → commit; on failure, recover."""
        started = time.perf_counter()
        transactions, consumer = self._clients.transactions, self._clients.consumer
        assert transactions is not None and consumer is not None
        transactions.renew_if_stale()
        if transactions.take_swept():
            self._rewind_after_sweep()
            return
        batch = Batch[S]()
        try:
            transactions.begin()
            producer = transactions.producer
            self._applier.records(records, batch, self._partitions, producer)
            self._ticker.produce(producer, ticks)
            batch.write_changelog(producer, self._changelog, self._partitions, self._serde, self._decider.snapshot,
                                  self._split)
            produced = time.perf_counter()
            retried = batch.commit(transactions, self._input, consumer.consumer_group_metadata(), self._partitions)
        except (KafkaException, TransactionWedged) as error:
            self._after_failed_transaction(error, batch)
            return
        self._observer.committed(self._name, time.perf_counter() - produced)
        if retried:  # a leader or coordinator moved: the clients' renewals may still be queued
            self._ticker.hold(self._settings.tick_grace_after_failure_ms / 1000)
        self._lifecycle.fire(Event.COMMITTED)
        self._observer.batch(self._name, len(records), time.perf_counter() - started)

    def _poll_batch(self) -> list[Message]:
        """What is already fetched, up to the batch bound; when nothing is, wait up to
        max_batch_ms for the first record only (consume() would wait for a full batch,
        adding its timeout to every hop of a run's latency)."""
        self._clients.nudge_consumer()  # fresh leaders while a leader or coordinator moves
        consumer = self._clients.consumer
        assert consumer is not None
        limit = self._settings.max_batch_records
        records = consumer.consume(limit, 0)
        if not records:
            first = consumer.poll(self._first_wait_s())
            if first is None:
                return []
            records = [first, *consumer.consume(limit - 1, 0)] if limit > 1 else [first]
        if self._settings.linger_ms:  # fewer, fuller transactions where latency matters less
            deadline = time.monotonic() + self._settings.linger_ms / 1000
            while len(records) < limit and (remaining := deadline - time.monotonic()) > 0:
                records += consumer.consume(limit - len(records), remaining)
        return records

    def _first_wait_s(self) -> float:
        """How long a poll that found nothing waits for a record: max_batch_ms while the
        loop has checks to make (not ready: the probe; a metadata nudge), else until the
        next timer could be due, within [max_batch_ms, IDLE_POLL_S]. A record still ends
        the wait at once; an idle processor steps 2 times a second, not 10, and its
        offsets check (every IDLE_OFFSETS_CHECK_S) and stop() lag by IDLE_POLL_S at most."""
        batch_s = self._settings.max_batch_ms / 1000
        if not self._lifecycle.ready() or self._clients.nudging():
            return batch_s
        timer_s = self._ticker.wait_s(self._partitions)
        return max(batch_s, min(IDLE_POLL_S, IDLE_POLL_S if timer_s is None else timer_s))

    def _after_failed_transaction(self, error: KafkaException | TransactionWedged, batch: Batch[S]) -> None:
        """Kafka's rule (abort, or a new producer, or stop when fenced: streams/transactions.py),
        then the state that ran ahead of the last commit is put back and the input
        rewound; that waits for the broker, not-ready meanwhile."""
        self._lifecycle.fire(Event.TRANSACTION_FAILED)
        assert self._clients.transactions is not None
        failed = time.monotonic()
        recovery = self._clients.transactions.recover(error)
        recovered = time.monotonic()
        self._recoverer.rewind_until_done(batch)
        log.info("%s: %s took %.2fs, the rewind %.2fs", self._name, recovery.value, recovered - failed,
                 time.monotonic() - recovered)
        # The clock ran on while the broker was away: a Tick now would expire leases whose
        # renewals sit in the clients' queues, sent on time. Let them land first.
        self._ticker.hold(self._settings.tick_grace_after_failure_ms / 1000)
        self._observer.aborted(self._name)

    def _rewind_after_sweep(self) -> None:
        """A new producer's sweep aborted what an earlier transaction left open, maybe a
        commit this instance took as done: the input back to the committed offsets, and
        a partition whose offset fell behind this instance's last commit restored."""
        self._recoverer.rewind_until_done(Batch())
        self._ticker.hold(self._settings.tick_grace_after_failure_ms / 1000)

    # ------------------------------------------------------------ readiness

    def _on_consumer_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (served by poll): all brokers down means not ready."""
        if error.fatal():
            self._fatal = error  # e.g. a static member fenced by a newer instance with its id
            self._lifecycle.fire(Event.FATAL)
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._broker_down()

    def _on_producer_error(self, error: KafkaError) -> None:
        # A fatal producer error surfaces from the next transactional call, and an
        # abandoned producer's errors must not stop the runtime: only readiness here.
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._broker_down()

    def _broker_down(self) -> None:
        self._clients.producer_stale()
        self._lifecycle.fire(Event.BROKER_DOWN)

    def _probe(self) -> None:
        """Idle and not ready: one metadata round trip a second tells when the broker is back."""
        if self._lifecycle.ready() or time.monotonic() - self._last_probe < 1.0:
            return
        self._last_probe = time.monotonic()
        consumer = self._clients.consumer
        assert consumer is not None
        try:
            consumer.list_topics(self._input, timeout=1.0)
        except KafkaException:
            return
        self._lifecycle.fire(Event.PROBE_ANSWERED)

    # ------------------------------------------------------------ rebalance

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        log.info("%s: assigned %s", self._name, numbers)
        self._observer.assigned(self._name, numbers)
        try:
            self._restore(numbers)
        except (KafkaException, StreamsError) as error:  # the broker went away mid-read: not fatal
            log.warning("%s: restoring %s failed (%s); retried before the next batch", self._name, numbers, error)
            self._lifecycle.fire(Event.RESTORE_FAILED)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches commit before consume() returns, so no transaction is open here.
        for tp in partitions:
            self._partitions.pop(tp.partition, None)
        log.info("%s: revoked %s", self._name, [tp.partition for tp in partitions])

    def _restore(self, partitions: list[int]) -> None:
        self._partitions.update(self._restorer.restore(partitions))


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
