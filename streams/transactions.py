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
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from taskplane.streams.exceptions import StreamsError

T = TypeVar("T")

# The producer's transactional id was taken over by a newer instance: never fight it.
FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED})


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

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] | None = None
        self.abandoned = 0  # threads left blocked in a call, for logs and tests

    def call(self, what: str, fn: Callable[[], T], deadline_s: float) -> T:
        jobs = self._jobs
        if jobs is None:
            jobs = self._jobs = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), name=f"{self._name}-calls", daemon=True).start()
        future: Future[T] = Future()
        jobs.put((fn, future))
        try:
            return future.result(deadline_s)
        except TimeoutError:
            if future.done():  # finished in the instant between the timeout and now
                return future.result()
            self._jobs = None  # the blocked thread keeps its queue; nothing else is sent to it
            self.abandoned += 1
            raise TransactionWedged(f"{what} did not return within {deadline_s:.1f}s") from None

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
