"""Fresh metadata while a transactional call is slow: librdkafka alone learns a moved
partition leader or coordinator seconds late.

When a broker dies (SIGKILL on a 3-node cluster), a producer asks for metadata once, at
the disconnect: the dead node still leads its partitions then (the controller fences it
a broker session later), and nothing asks again. Partitions with queued records wait
on the dead node's handle (no produce request fails, so no leader query starts); a
``send_offsets_to_transaction`` whose group coordinator died waits in a coordinator
request that looks the coordinator up again only on a broker state change
(librdkafka's ``rd_kafka_coord_req_fsm``; its timeout is not checked while it waits).
Measured on the 3-node dev cluster: the fence at +2.9 s, the producer's next metadata at
+3.9 s (some unrelated trigger), and the dead node's partitions, then moved to
librdkafka's internal broker, picked up by its once-a-second topic scan at +5.0 s.

A metadata request (``list_topics``, all topics) every ``INTERVAL_S`` while a call is slow,
and for ``DISCONNECT_S`` after a lost connection, brings the new leaders in within a
fraction of a second of the fence: the response updates every known partition's leader.
Nothing is asked while calls are quick and connections hold, so an idle or healthy
processor sends no extra requests (docs/failover.md).

A node missing from a response (fenced) is decommissioned by librdkafka, but a producer's
coordinator cache keeps pointing at its handle: the next ``send_offsets_to_transaction``
whose group coordinator was that node waits on it until some other broker connection
changes state (seen: 6 s, until abandoned, in 6 of 6 such calls). ``on_broker_lost``
tells the owner, which starts its next transaction on a fresh producer (an empty cache).

A consumer is asked on its own polling thread (``on_loop``), never from the nudge's:
confluent-kafka serialises a consumer's calls, and a ``list_topics`` from another
thread waits for the handle in 1 ms sleeps while the owner polls back to back. An idle
breaker's nudge thread was seen spinning there for minutes (~930 wake-ups a second,
14-24 CPU ms/s), its own timeout never reached (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException

log = logging.getLogger(__name__)

# Between two metadata requests while calls are slow. A fenced node is decommissioned by
# the first response after the fence, its partitions re-led by the next one: two rounds.
INTERVAL_S = 0.25
# Keep asking this long after the last slow call: the consumer fetches from a moved
# leader only once it knows it, and the next batch needs those records.
TAIL_S = 1.0
# Per request: a handle whose every broker is away answers with an error, not a hang.
REQUEST_TIMEOUT_S = 1.0
# After a client lost its connection to a broker: until a dead node is fenced (a broker
# session, 2 s on the dev cluster, 9 s by Kafka's default) its partitions and coordinators
# stay on it, and a processor whose open transaction never touched it still fetches its
# input from it: its consumer would learn the new leader at its once-a-second topic scan.
DISCONNECT_S = 10.0


class MetadataNudge:
    """``poke()`` (non-blocking, from any thread) asks for metadata through ``producer()``
    (the current one, or None) on a helper thread, every ``INTERVAL_S`` until ``TAIL_S``
    after the last poke; ``on_loop`` does the same for a consumer, on the thread that
    polls it."""

    def __init__(self, name: str, producer: Callable[[], Any | None],
                 on_broker_lost: Callable[[], None] | None = None) -> None:
        self._name = name
        self._producer = producer
        self._on_broker_lost = on_broker_lost  # a node left the cluster's metadata (fenced)
        self._brokers: set[int] = set()
        self._until = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_next = 0.0  # when on_loop asks next
        self._closed = False
        self.requests = 0  # metadata requests sent, for logs and tests

    def poke(self, for_s: float = TAIL_S) -> None:
        """Ask for metadata from now until ``for_s`` from now (or later, when asked to)."""
        with self._lock:
            if self._closed:  # its owner has closed: nothing to ask through
                return
            self._until = max(self._until, time.monotonic() + for_s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"{self._name}-nudge", daemon=True)
                self._thread.start()
        self._wake.set()

    @property
    def nudging(self) -> bool:
        """Whether metadata is being asked for (a poke's window has not ended)."""
        return time.monotonic() < self._until

    def on_loop(self, consumer: Any) -> None:
        """From the thread that polls ``consumer``, between polls: one metadata request
        through it while nudging, at most every ``INTERVAL_S``; nothing (a comparison)
        otherwise."""
        now = time.monotonic()
        if now >= self._until or now < self._loop_next:
            return
        self._loop_next = now + INTERVAL_S
        self._ask(consumer)

    def close(self) -> None:
        """Ends the helper thread, which holds ``producer`` (and so its owner, with every
        client it has) for as long as it runs: the owner calls this when it closes."""
        with self._lock:
            self._closed, self._until = True, 0.0
        self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            while time.monotonic() < self._until and not self._closed:
                started = time.monotonic()
                if (producer := self._producer()) is not None:
                    self._ask(producer)
                time.sleep(max(0.0, INTERVAL_S - (time.monotonic() - started)))

    def _ask(self, handle: Any) -> None:
        try:
            brokers = set(handle.list_topics(timeout=REQUEST_TIMEOUT_S).brokers)
            self.requests += 1
        except (KafkaException, RuntimeError) as error:  # away, or closed meanwhile
            log.debug("%s: metadata nudge: %s", self._name, error)
            return
        with self._lock:
            lost, self._brokers = self._brokers - brokers, brokers
        if lost and self._on_broker_lost is not None:
            log.info("%s: node(s) %s left the cluster's metadata", self._name, sorted(lost))
            self._on_broker_lost()
