"""After a failed transaction, or a group whose offsets cannot be read: the rewind (memory
back to what committed, the input back to the committed offsets), the offsets repair
(``unstick``) and the idle processor's offsets check. Why each exists: docs/failover.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from taskplane.streams.batch import Batch, Fate
from taskplane.streams.exceptions import StreamsError
from taskplane.streams.partition_state import PartitionState
from taskplane.streams.runtime_clients import ProcessorClients
from taskplane.streams.transactions import StopRequested

log = logging.getLogger(__name__)

S = TypeVar("S")

# How long the rewind waits for committed() before asking whether the broker answers.
# A pending offset commit nothing completes (see unstick) makes it wait out its whole
# deadline: the call timeout (5 s) was most of a broker restart's 6.4-7.2 s resumes.
# Answered in milliseconds otherwise; a slow answer costs one harmless repair.
REWIND_COMMITTED_S = 1.5
# How often an idle processor checks that its group's committed offsets are readable: a
# pending offset commit nothing completes leaves its consumer without positions, idle
# and without an error (the broker-restart wedge, docs/failover.md).
IDLE_OFFSETS_CHECK_S = 5.0


class Recoverer(Generic[S]):
    """Rewinds and repairs one processor. ``restore(partitions)`` restores partitions
    into ``partitions`` (the runtime's own dict, shared)."""

    def __init__(self, name: str, clients: ProcessorClients, partitions: dict[int, PartitionState[S]],
                 restore: Callable[[list[int]], None], input_topic: str, call_timeout_s: float,
                 stop: threading.Event) -> None:
        self._name = name
        self._clients = clients
        self._partitions = partitions
        self._restore = restore
        self._input = input_topic
        self._timeout_s = call_timeout_s
        self._stop = stop
        self._unreadable = 0  # idle checks in a row that could not read the offsets
        self._last_check = 0.0
        self._readiness_seen = 0.0

    def rewind_until_done(self, batch: Batch[S]) -> None:
        """``rewind`` until it succeeds (each of its Kafka calls has a deadline). While the
        broker is away the consumer is polled between tries, not slept on: a member the
        broker fenced meanwhile rejoins only through poll (it must give up its lost
        partitions first); records that poll returns are dropped, the rewind reads them
        again. A failure with the broker answering goes to ``unstick``."""
        failures = 0
        while True:
            try:
                self.rewind(batch)
                return
            except (KafkaException, StreamsError) as error:
                if self._stop.is_set():
                    raise StopRequested("stopped while waiting for the broker") from error
                log.warning("%s: rewind failed (%s); retrying", self._name, error)
                if self._clients.broker_answers():
                    failures += 1
                    self.unstick(failures)
                else:
                    self._serve_group(0.5)

    def rewind(self, batch: Batch[S]) -> None:
        """The input offsets committed with the changelog tell the failed batch's fate per
        partition (``Batch.settle``); a partition that moved on without this instance is
        restored from the changelog. Then the input goes back to the committed offsets."""
        consumer = self._clients.consumer
        assert consumer is not None
        missing = sorted({tp.partition for tp in consumer.assignment()} - set(self._partitions))
        if missing:  # assigned while a retry served the group, and its restore failed then
            self._restore(missing)
        partitions = list(self._partitions)  # as of now: a retry may have served a rebalance
        if not partitions:
            return
        committed = consumer.committed([TopicPartition(self._input, p) for p in partitions],
                                       min(self._timeout_s, REWIND_COMMITTED_S))
        unknown, fates = [], set()
        for tp in committed:
            owned = self._partitions.get(tp.partition)
            if owned is not None:
                fates.add(fate := batch.settle(tp.partition, owned, tp.offset))
                if fate is Fate.UNKNOWN:
                    unknown.append(tp.partition)
                elif tp.offset < owned.committed_to:  # a commit taken as done was swept (streams/sweep.py)
                    log.warning("%s: partition %d's committed offset %d is behind the %d this instance "
                                "committed; restoring it", self._name, tp.partition, tp.offset, owned.committed_to)
                    unknown.append(tp.partition)
        if Fate.COMMITTED in fates:  # one transaction: the keys the changelog lacked went with it
            for owned in self._partitions.values():
                owned.unsaved.clear()
        if unknown:
            log.warning("%s: partitions %s moved on without this instance; restoring them", self._name, unknown)
            self._restore(unknown)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(self._input, tp.partition, offset))

    def unstick(self, tries: int) -> None:
        """committed() fails while the broker answers: the group holds an offset commit of
        this producer id that no marker completed, and committed() asks for stable
        offsets, so it times out, and so does a new member's start. Seen after broker
        restarts: a restarted broker finished a prepared commit without its markers
        (streams/sweep.py), or an abandoned producer's offset commit landed after its
        successor's init had aborted that transaction (librdkafka has no KIP-890). A new
        producer's sweep aborts it, with the records of the same transaction that are
        still open (committing it instead, as this did before, made those records
        visible next to their re-decision). When that does not help, a new consumer."""
        transactions = self._clients.transactions
        if tries <= 2 and self._partitions and transactions is not None:
            log.warning("%s: committed offsets unreadable with the broker answering; a new producer sweeps "
                        "what this producer id left open", self._name)
            transactions.renew()
            return
        self.renew_consumer(f"committed offsets unreadable after {tries} tries with the broker answering")

    def renew_consumer(self, why: str) -> None:
        """A new consumer in the group, the old one dropped with its partitions' state
        (restored from the changelog on the new assignment). Seen once in 12 broker
        restarts: after the return, committed() on the old consumer timed out for minutes
        while a fresh client read the same group's offsets at once."""
        log.warning("%s: %s; re-creating the consumer", self._name, why)
        self._partitions.clear()
        self._clients.renew_consumer()

    def check_offsets(self, ready: bool, readiness_changed_at: float) -> None:
        """Idle and ready: every ``IDLE_OFFSETS_CHECK_S``, that committed() answers. A
        consumer whose group holds a pending offset commit gets no positions, so no
        records, and no error: nothing fails and the rewind's repair never ran (bench.failover
        and a CI run: processors idle for minutes after a broker restart with input
        waiting). The same repair (``unstick``) runs from here once two checks in a row
        failed with the broker answering, the first of them a whole interval after the
        processor became ready: just after the broker's return a check met a coordinator
        still loading (NOT_COORDINATOR), which passes by itself, and a repair then only
        cost a rebalance (bench.failover: 7.2-7.4 s to resume instead of ~1.7 s)."""
        if readiness_changed_at != self._readiness_seen:  # failures count within one stretch of readiness
            self._readiness_seen = self._last_check = readiness_changed_at
            self._unreadable = 0
        now = time.monotonic()
        if not self._partitions or not ready or now - self._last_check < IDLE_OFFSETS_CHECK_S:
            return
        consumer = self._clients.consumer
        assert consumer is not None
        try:
            consumer.committed([TopicPartition(self._input, p) for p in self._partitions], REWIND_COMMITTED_S)
        except KafkaException as error:
            if self._clients.broker_answers():
                self._unreadable += 1
                log.warning("%s: idle, and the committed offsets are unreadable with the broker answering (%s)%s",
                            self._name, error, "" if self._unreadable > 1 else "; checking again")
                if self._unreadable > 1:
                    self.unstick(self._unreadable - 1)
        else:
            self._unreadable = 0
        self._last_check = time.monotonic()

    def _serve_group(self, timeout_s: float) -> None:
        consumer = self._clients.consumer
        assert consumer is not None
        try:
            consumer.poll(timeout_s)
        except (KafkaException, StreamsError) as error:  # a rebalance callback's restore failed
            log.warning("%s: serving the group: %s", self._name, error)
            self._stop.wait(timeout_s)
