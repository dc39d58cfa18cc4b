"""A processor's Kafka handles: its group consumer and its transactional producer, with
the processor's settings, replaced when a failure demands it (docs/failover.md)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from taskplane.streams import kafka_clients
from taskplane.streams.metadata_nudge import DISCONNECT_S, MetadataNudge
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.sweep import settle_orphans
from taskplane.streams.transactions import TransactionalProducer

log = logging.getLogger(__name__)

Rebalance = Callable[[Consumer, list[TopicPartition]], None]


class ProcessorClients:
    """``consumer`` and ``transactions`` of one processor instance. A replaced consumer's
    callbacks are ignored from the moment it is replaced (its generation is over)."""

    def __init__(self, name: str, kafka_config: dict[str, Any], settings: RuntimeSettings, input_topic: str) -> None:
        self._name = name
        self._kafka = kafka_config
        self._settings = settings
        self._input = input_topic
        self._timeout_s = settings.call_timeout_ms / 1000
        self.group_id = settings.group_id or name
        self.consumer: Consumer | None = None
        self.transactions: TransactionalProducer | None = None
        self._generation = 0
        self._stale_early = False  # the broker went away before the producer was made
        # Fresh metadata for both handles while a transactional call is slow (a leader or
        # coordinator moved: streams/metadata_nudge.py): the producer's on the nudge's
        # thread, the consumer's on the polling thread (``nudge_consumer``).
        self._nudge = MetadataNudge(name, lambda: self.transactions and self.transactions.producer,
                                    self._broker_lost)
        self._callbacks: tuple[Rebalance, Rebalance, Callable[[KafkaError], None]] | None = None

    def subscribe(self, on_assign: Rebalance, on_revoke: Rebalance, on_error: Callable[[KafkaError], None]) -> None:
        """The group consumer, subscribed to the input (partitions come at a poll)."""
        self._callbacks = (on_assign, on_revoke, on_error)
        generation = self._generation

        def current(callback: Callable[..., None]) -> Callable[..., None]:
            return lambda *args: callback(*args) if generation == self._generation else None

        consumer = self._new_consumer(self._watching(current(on_error)))
        consumer.subscribe([self._input], on_assign=current(on_assign), on_revoke=current(on_revoke))
        self.consumer = consumer

    def renew_consumer(self) -> None:
        """A new consumer in the group; the old one closed (with a deadline) and its
        callbacks ignored from now on."""
        assert self._callbacks is not None
        old, self.consumer = self.consumer, None
        self._generation += 1  # before anything: the old one's callbacks go quiet
        # Closed, not just dropped: a live handle keeps heartbeating and holds the
        # partitions. Its close may hang, so it gets a deadline on a thread of its own.
        closing = threading.Thread(target=close_quietly, args=(old, self._name), daemon=True)
        closing.start()
        closing.join(self._timeout_s)
        if closing.is_alive():
            log.warning("%s: the old consumer did not close in time; its partitions move at its session's end",
                        self._name)
        self.subscribe(*self._callbacks)

    def start_transactions(self, stop: threading.Event, on_error: Callable[[KafkaError], None],
                           written: Sequence[str] = ()) -> None:
        """The transactional producer, initialised (aborts what a predecessor left open),
        each new one swept over the ``written`` topics when the group's offsets are
        pending (streams/sweep.py)."""
        watched = self._watching(on_error)
        topics = list(written)

        def settle(producer: Producer) -> bool:
            consumer = self.consumer
            assert consumer is not None  # subscribed before the producer is made
            return settle_orphans(producer, self._kafka, self.group_id, self._input, topics,
                                  consumer.consumer_group_metadata, self._timeout_s)

        self.transactions = TransactionalProducer(self._name, lambda lane: self._new_producer(watched, lane),
                                                  self._timeout_s, stop,
                                                  init_patience_s=self._settings.transaction_timeout_ms / 1000,
                                                  on_slow_call=self._nudge.poke, settle=settle if topics else None,
                                                  lanes=self._settings.producers)
        self.transactions.stale |= self._stale_early

    def _watching(self, on_error: Callable[[KafkaError], None]) -> Callable[[KafkaError], None]:
        """``on_error``, and fresh metadata for a while after a lost broker connection (a
        dead node: its leaderships and coordinators move at its fence, which librdkafka
        alone learns seconds later: streams/metadata_nudge.py)."""
        def watched(error: KafkaError) -> None:
            if error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                self._nudge.poke(DISCONNECT_S)
            on_error(error)
        return watched

    def nudge_consumer(self) -> None:
        """From the polling thread, between polls: the consumer's share of a nudge."""
        if self.consumer is not None:
            self._nudge.on_loop(self.consumer)

    def nudging(self) -> bool:
        """A nudge is on: the polling thread's ``nudge_consumer`` is due every INTERVAL_S."""
        return self._nudge.nudging

    def _broker_lost(self) -> None:
        if self.transactions is not None:
            self.transactions.broker_lost()

    def producer_stale(self) -> None:
        """The broker went away: the next batch starts on a new producer (after an outage
        the old one's coordinator state is stale: ``TransactionalProducer.renew``)."""
        if self.transactions is None:
            self._stale_early = True
        else:
            self.transactions.stale = True

    @property
    def producer(self) -> Producer:
        assert self.transactions is not None
        return self.transactions.producer

    def broker_answers(self) -> bool:
        """A metadata round trip on a fresh client."""
        try:
            kafka_clients.admin(self._kafka).list_topics(self._input, timeout=self._timeout_s)
        except KafkaException:
            return False
        return True

    def close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()  # leaves the group; revocation runs first
            except KafkaException as error:
                log.warning("consumer close: %s", error)
        if self.transactions is not None:
            self.transactions.close()
        self._nudge.close()

    def _new_producer(self, on_error: Callable[[KafkaError], None], lane: int = 0) -> Producer:
        """Lane 0's transactional id is ``NAME-INSTANCE`` (as before lanes), lane n's
        ``NAME-INSTANCE.n``: a restart with the same instance id fences them all."""
        suffix = f".{lane}" if lane else ""
        return kafka_clients.transactional_producer(
            self._kafka, f"{self._name}-{self._settings.instance_id}{suffix}",
            transaction_timeout_ms=self._settings.transaction_timeout_ms,
            linger_ms=self._settings.producer_linger_ms,
            partitioner="murmur2_random", error_cb=on_error,
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

    def _new_consumer(self, on_error: Callable[[KafkaError], None]) -> Consumer:
        session = ({"session.timeout.ms": self._settings.session_timeout_ms}
                   if self._settings.group_protocol == "classic" else {})
        return kafka_clients.consumer(
            self._kafka, self.group_id, start="earliest", protocol=self._settings.group_protocol, error_cb=on_error,
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
                # How long the broker holds a fetch that finds nothing (settings.fetch_wait_ms,
                # 500). A record (or the commit marker that makes it readable) answers a held
                # fetch at once, so this costs no latency, except to a busy partition left out
                # of it (above): that waits at most this long; none was left out in 1,000-run
                # saturated phases (each input fetch held all 4 partitions). Each wait that ends
                # empty is a request: 100 ms made an idle processor's 10 a second, about a third
                # of an idle stack's broker CPU (docs/benchmarks.md, "Idle").
                "fetch.wait.max.ms": self._settings.fetch_wait_ms,
            })


def close_quietly(consumer: Consumer | None, name: str) -> None:
    if consumer is not None:
        try:
            consumer.close()
        except (KafkaException, RuntimeError) as error:
            log.warning("%s: closing the old consumer: %s", name, error)
