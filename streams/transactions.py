"""Transactional producer calls with deadlines, and the rule for a failed one.

librdkafka documents three outcomes of a failed transactional call: retriable (the
same call may succeed later), abortable (abort the transaction, rewind, go on) and
fatal (the producer is unusable: make a new one). A fourth shows up in practice: a
call that never returns after the group coordinator went away (librdkafka #5511,
and #5456: ``send_offsets_to_transaction`` ignores its timeout). So every call runs
on a helper thread and is abandoned at its deadline; the producer it was blocked in
counts as wedged and is replaced (``init_transactions`` on a new producer with the
same transactional id bumps the epoch: whatever the old one still sends is fenced).
"""

from __future__ import annotations

import enum
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from taskplane.streams.exceptions import StreamsError

T = TypeVar("T")
log = logging.getLogger(__name__)

# The producer's transactional id was taken over by a newer instance: never fight it.
FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED})
# Between retries of a transactional call that failed at once (the coordinator's node is
# down: "Broker transport failure (after 0ms)"): librdkafka looks the coordinator up again.
RETRY_PAUSE_S = 0.1
# A send_offsets_to_transaction still blocked this long after a node left the cluster's
# metadata, on a producer made before that, waits on the node's decommissioned handle
# (librdkafka's coordinator cache keeps it: streams/metadata_nudge.py) and is given up: a
# new producer (its init_transactions then waits while the coordinator aborts the old
# transaction: 0.6-1.3 s) instead of the whole wedge bound (6 s).
LOST_BROKER_GRACE_S = 0.5
# A call still running after this is slow: ``DeadlineCaller.on_slow`` is told (again every
# this long), and the processor asks for fresh metadata meanwhile (streams/metadata_nudge.py).
SLOW_CALL_S = 0.25


class TransactionWedged(StreamsError):
    """A transactional call did not return by its deadline; its producer is abandoned."""

    retryable = True


class Recovery(enum.Enum):
    """What a failed transaction asks for."""

    ABORT = "abort"  # abort the transaction on this producer, rewind, go on
    RECREATE = "recreate"  # the producer is unusable (fatal, or wedged): make a new one
    FENCED = "fenced"  # another instance owns the transactional id: stop


def recovery_for(error: BaseException) -> Recovery:
    """The rule of Kafka's transactional API for ``error`` (from any step of a batch)."""
    if isinstance(error, TransactionWedged):
        return Recovery.RECREATE
    if isinstance(error, KafkaException) and isinstance(error.args[0], KafkaError):
        kafka_error: KafkaError = error.args[0]
        if kafka_error.code() in FENCED_CODES:
            return Recovery.FENCED
        if kafka_error.fatal():
            return Recovery.RECREATE
    # Abortable, retriable (a timeout: the broker is away) or a state error: an abort is
    # tried first; when that fails too, the producer is re-created.
    return Recovery.ABORT


class DeadlineCaller:
    """Runs blocking calls on one daemon helper thread, waiting at most a deadline.

    A call still running at its deadline is abandoned with its thread (a daemon: it
    cannot hold the process at exit) and ``TransactionWedged`` is raised; the next
    call gets a fresh thread. The handoff costs tens of microseconds per call."""

    def __init__(self, name: str, on_slow: Callable[[], None] | None = None) -> None:
        self.name = self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] | None = None
        self.abandoned = 0  # threads left blocked in a call, for logs and tests
        self._on_slow = on_slow  # told every SLOW_CALL_S while a call runs (must not block)

    def call(self, what: str, fn: Callable[[], T], deadline_s: float, patience_s: float = 0.0,
             stop: threading.Event | None = None, give_up: Callable[[], bool] | None = None) -> T:
        """``fn()``'s result or error; past ``deadline_s``, waited for ``patience_s`` more
        (a warning logged, ``stop`` ending the wait early) before it is abandoned; abandoned
        earlier once ``give_up()`` (asked while it is slow) says so."""
        jobs = self._jobs
        if jobs is None:
            jobs = self._jobs = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), name=f"{self._name}-calls", daemon=True).start()
        future: Future[T] = Future()
        jobs.put((fn, future))
        started = time.monotonic()
        until = started + deadline_s
        while (remaining := until - time.monotonic()) > 0:
            if futures.wait([future], timeout=min(remaining, SLOW_CALL_S)).done:
                return future.result()
            if self._on_slow is not None:
                self._on_slow()
            if give_up is not None and give_up():
                patience_s = 0.0
                break
        if patience_s > 0 and not future.done():
            log.warning("%s: %s has not returned after %.1fs; waiting up to %.0fs more for it",
                        self._name, what, deadline_s, patience_s)
            until = time.monotonic() + patience_s
            while not future.done() and time.monotonic() < until and not (stop is not None and stop.is_set()):
                futures.wait([future], timeout=SLOW_CALL_S)
                if self._on_slow is not None:
                    self._on_slow()
        if future.done():  # finished late, or in the instant between the timeout and now
            return future.result()
        self._jobs = None  # the blocked thread keeps its queue; nothing else is sent to it
        self.abandoned += 1
        raise TransactionWedged(f"{what} did not return within {time.monotonic() - started:.1f}s") from None

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.put((_STOP, Future()))
            self._jobs = None


def discard(producer: Any) -> None:
    """Drop ``producer`` on a daemon thread: destroying a handle whose broker is away can
    hang ("Handle is terminating in state TRY_CONNECT"), and it must not hang the caller.
    The caller drops its own references; a thread still blocked in one of the producer's
    calls keeps it alive until that call returns."""
    holder = [producer]
    threading.Thread(target=holder.clear, name="discard-producer", daemon=True).start()


def _STOP() -> None:  # noqa: N802 - a sentinel job
    return None


def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
    while True:
        fn, future = jobs.get()
        if fn is _STOP:
            return
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn())
        except BaseException as error:  # handed to the waiting caller
            future.set_exception(error)


def call_retrying(calls: DeadlineCaller, what: str, fn: Callable[[], None], timeout_s: float,
                  stop: threading.Event, budget_s: float | None = None, wedged_after_s: float | None = None,
                  give_up: Callable[[], bool] | None = None) -> float:
    """``fn`` (a transactional call with ``timeout_s``, abandoned ``wedged_after_s`` after it
    started, by default a second past ``timeout_s``) through
    ``calls``, again while it fails with a retriable error, for up to ``budget_s`` (default
    ``timeout_s``) after the first failure; the seconds from the first failure to success
    (0.0: none). A partition leader or
    coordinator on a node that died answers again once the controller has moved it (the
    broker session timeout): the call then goes through on the same producer and the
    batch commits. Abort and rewind instead (or a new producer, whose init_transactions
    waits while the coordinator aborts the old transaction) cost seconds more per leader
    kill on a 3-node cluster (docs/failover.md). Not retriable (abortable, fatal), a
    wedged call, or the budget spent: raised, for ``recover``."""
    budget_s = timeout_s if budget_s is None else budget_s
    wedged_after_s = timeout_s + 1 if wedged_after_s is None else wedged_after_s
    first_failure: float | None = None
    while True:
        try:
            calls.call(what, fn, wedged_after_s, give_up=give_up)
            return 0.0 if first_failure is None else time.monotonic() - first_failure
        except KafkaException as error:
            kafka_error = error.args[0] if error.args and isinstance(error.args[0], KafkaError) else None
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            if (kafka_error is None or not kafka_error.retriable() or kafka_error.fatal()
                    or kafka_error.txn_requires_abort() or now - first_failure >= budget_s or stop.is_set()):
                raise
            log.warning("%s: %s failed (%s); retrying", calls.name, what, kafka_error)
            stop.wait(RETRY_PAUSE_S)


class ProducerFenced(StreamsError):
    """Another instance took over this one's transactional id or partitions."""


class StopRequested(StreamsError):
    """The owner asked to stop while a call waited for the broker to come back."""


class TransactionalProducer:
    """The processor's transactional producer, kept usable across broker outages.

    ``producer`` is the current handle (produce into it between ``begin`` and
    ``commit``); after ``recover`` it may be a new one. ``stop`` ends the waits.

    With ``lanes`` > 1 it is one of that many producers, each with its own transactional
    id, taking turns: each commit hands the next transaction to the next one. One
    transaction is open at a time, as with one producer, and the next begins only
    after the commit returned, so its records follow the previous one's in every
    partition. What the turns avoid: a transaction that begins on an id whose commit
    markers are still being written meets CONCURRENT_TRANSACTIONS on its first
    AddPartitionsToTxn / AddOffsetsToTxn and retries (docs/runtime.md). A renewal
    renews every lane (a restarted instance fences all its ids the same way)."""

    def __init__(self, name: str, make: Callable[[int], Producer], call_timeout_s: float,
                 stop: threading.Event, init_patience_s: float = 30.0,
                 on_slow_call: Callable[[], None] | None = None,
                 settle: Callable[[Producer], bool] | None = None, lanes: int = 1) -> None:
        self._name = name
        self._make = make  # a new producer with lane n's transactional id
        self._lanes = lanes
        # Run on each new producer after its init, before its first transaction (the
        # sweep of what an earlier transaction of the id left open: streams/sweep.py);
        # True when it aborted something this instance may have taken as committed.
        self._settle = settle
        self.swept = False  # a settle returned True since the owner last looked (``take_swept``)
        self._timeout_s = call_timeout_s
        self._init_patience_s = init_patience_s
        self._stop = stop
        # on_slow_call: told while a call is slow (the runtime then asks for fresh metadata)
        self._calls = DeadlineCaller(name, on_slow_call)
        # The broker went away since this producer was made: the next batch starts on a
        # new one (its coordinator state is stale; see ``renew``). Set from error callbacks.
        self.stale = False
        self._lost_at = 0.0  # when a node last left the cluster's metadata (``broker_lost``)
        self._made_at = time.monotonic()
        self._producers = self._all_initialised()
        self._turn = 0

    @property
    def producer(self) -> Producer:
        """The lane whose turn it is (the only one with a transaction open, if any)."""
        return self._producers[self._turn]

    def broker_lost(self) -> None:
        """A node left the cluster's metadata (fenced): this producer's coordinator cache
        may point at its decommissioned handle. The next batch starts on a new producer,
        and a send_offsets_to_transaction blocked since gives up ``LOST_BROKER_GRACE_S``
        after it."""
        self._lost_at = time.monotonic()
        self.stale = True

    def _blocked_by_lost_broker(self) -> bool:
        lost_at = self._lost_at
        return lost_at > self._made_at and time.monotonic() - lost_at > LOST_BROKER_GRACE_S

    def begin(self) -> None:
        self.producer.begin_transaction()

    def commit(self, positions: list[TopicPartition], group_metadata: Any) -> float:
        """send_offsets (when there are any) and commit. send_offsets gets the call timeout,
        each try of the commit half of it; a retriable failure is tried again for up to the
        call timeout (``call_retrying``). A call that does not return is abandoned (a new
        producer then) a second past the call timeout from the commit's start, or, for
        send_offsets, ``LOST_BROKER_GRACE_S`` after a node left the cluster: librdkafka does
        not honour its timeout while the group coordinator's node is dead or decommissioned
        (docs/failover.md). Returns the seconds spent on retries."""
        producer, attempt_s, budget_s = self.producer, self._timeout_s / 2, self._timeout_s
        started = time.monotonic()

        def wedged_after() -> float:  # the whole budget from the commit's start, and a try at least
            return max(attempt_s + 1, started + budget_s + 1 - time.monotonic())

        retried = 0.0
        if positions:
            # The whole budget in one try: librdkafka retries the offset commit itself while
            # the group coordinator answers COORDINATOR_LOAD_IN_PROGRESS (its check with a
            # transaction coordinator on a dead node fails until the fence), and turns it into
            # an abortable error when the try's timeout ends: with 2.5 s tries, an abort
            # (waiting for the fence too) and a rewind followed.
            retried += call_retrying(
                self._calls, "send_offsets_to_transaction",
                lambda: producer.send_offsets_to_transaction(positions, group_metadata, budget_s),
                budget_s, self._stop, budget_s, wedged_after(), self._blocked_by_lost_broker)
        # Not given up early: its EndTxn goes to the transaction coordinator, which
        # librdkafka looks up again by itself, and its records to leaders the nudges
        # refresh (given up 1 s after a node left, commits that were only slow were lost to
        # a new producer: 0.6-1.3 s each).
        retried += call_retrying(self._calls, "commit_transaction", lambda: producer.commit_transaction(attempt_s),
                                 attempt_s, self._stop, budget_s, wedged_after())
        if retried:
            log.warning("%s: transaction committed after %.1fs of retries (%.1fs in all)", self._name, retried,
                        time.monotonic() - started)
        self._turn = (self._turn + 1) % self._lanes  # the next transaction on the next id
        return retried

    def recover(self, error: BaseException) -> Recovery:
        """After a failed batch: abort, or a new producer; raises ProducerFenced on a fence."""
        recovery = recovery_for(error)
        if recovery is Recovery.FENCED:
            raise ProducerFenced(str(error)) from error
        log.warning("%s: transaction failed (%s); %s", self._name, error, recovery.value)
        if recovery is Recovery.ABORT:
            # Tries of half the call timeout, resumed on the same producer while it times out
            # ("retry call to resume"), up to the call timeout in all: an abort waits for the
            # transaction coordinator and for the batch's records in flight, both on a dead
            # node until the fence (and its new leaders, with fresh metadata). A new producer
            # instead waits in init_transactions (CONCURRENT_TRANSACTIONS) while the
            # coordinator aborts the old transaction: 0.9-3.4 s after an abort given up at
            # 2.5 s on a 3-node cluster.
            producer, timeout_s = self.producer, self._timeout_s / 2
            try:
                call_retrying(self._calls, "abort_transaction", lambda: producer.abort_transaction(timeout_s),
                              timeout_s, self._stop, timeout_s)
                return recovery
            except (KafkaException, TransactionWedged) as abort_error:
                if recovery_for(abort_error) is Recovery.FENCED:
                    raise ProducerFenced(str(abort_error)) from abort_error
                log.warning("%s: abort failed (%s); re-creating the producer", self._name, abort_error)
        self.renew()  # a thread still blocked in the old one keeps it alive meanwhile
        return Recovery.RECREATE

    def renew(self) -> None:
        """A new producer between transactions: after an outage the idle one's coordinator
        state is stale (measured: its first send_offsets_to_transaction after the broker's
        return hung past its deadline, 6 s lost; a fresh producer's init took < 0.3 s).
        Every lane's: the others' states are as stale, and an orphan left under another
        lane's producer id is settled by that id's sweep only (streams/sweep.py)."""
        self.stale = False
        for producer in self._producers:
            discard(producer)
        self._turn = 0
        self._producers = self._all_initialised()

    def renew_if_stale(self) -> None:
        if self.stale:
            self.renew()

    def take_swept(self) -> bool:
        """Whether a new producer's sweep aborted what an earlier transaction left open
        since the last call: the owner's memory may then be ahead of the log."""
        swept, self.swept = self.swept, False
        return swept

    def close(self) -> None:
        for producer in self._producers:
            try:
                self._calls.call("flush", functools.partial(producer.flush, 5), 6)
            except (KafkaException, TransactionWedged) as error:  # nothing of it commits anyway
                log.warning("%s: producer flush at close: %s", self._name, error)
        self._calls.close()

    def _all_initialised(self) -> list[Producer]:
        """Every lane's producer initialised (each init aborts what its id left open),
        then each settled: settled before the other lanes' inits, a sweep would take
        the pending offsets of a predecessor's transaction open on another id for an
        orphan of its own."""
        producers = [self._initialised(lane, settle=False) for lane in range(self._lanes)]
        if self._settle is None:
            return producers
        return [self._initialised(lane, ready=producer) for lane, producer in enumerate(producers)]

    def _initialised(self, lane: int, settle: bool = True, ready: Producer | None = None) -> Producer:
        """A producer after init_transactions (which aborts what an earlier producer with
        the same transactional id left open). A timed-out init is resumed on the same
        producer ("retry call to resume"): a second one would race the first one's
        pending InitProducerId and be fenced by it. A call past its deadline is waited for
        (up to the transaction timeout, when the broker has aborted whatever it was
        finishing); only a fatal error, or a call still blocked after that, gets a fresh
        producer. ``ready``: lane's producer, initialised already (settled here)."""
        producer = ready if ready is not None else self._make(lane)
        initialised = ready is not None
        if ready is None:
            self._made_at = time.monotonic()
        while True:
            try:  # patient: a second producer would race this one's InitProducerId (each
                # bumps the epoch and aborts the other's), and under CPU starvation a call
                # that honours its timeout can still return late (docs/failover.md)
                if not initialised:
                    self._calls.call("init_transactions",
                                     functools.partial(producer.init_transactions, self._timeout_s),
                                     self._timeout_s + 1, patience_s=self._init_patience_s, stop=self._stop)
                    initialised = True
                if settle and self._settle is not None:
                    # Before any commit of this producer id: its markers would decide the
                    # orphans. A failed sweep leaves its transaction open: a new producer
                    # (whose init aborts it, orphans included) tries again.
                    self.swept |= self._calls.call("sweep", functools.partial(self._settle, producer),
                                                   3 * self._timeout_s + 1, stop=self._stop)
                return producer
            except (KafkaException, TransactionWedged) as error:
                recovery = recovery_for(error)
                if recovery is Recovery.FENCED:
                    raise ProducerFenced(str(error)) from error
                if self._stop.is_set():
                    raise StopRequested("stopped while waiting for the broker") from error
                log.warning("%s: init_transactions or its sweep failed (%s); retrying", self._name, error)
                if recovery is Recovery.RECREATE or initialised:
                    discard(producer)
                    producer, initialised = self._make(lane), False
                    self._made_at = time.monotonic()
