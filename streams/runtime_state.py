"""The processor runtime's states, what moves it between them, and its readiness.

    STARTING --started--> READY <--committed / probe answered-- AWAY
       READY --broker down / transaction failed--> AWAY
    any live --restore failed--> RESTORE_PENDING --rewinding--> AWAY
    any live --fatal client error--> FAILED;  anything --stopped--> STOPPED

Only READY is ready (``/readyz``). A pending rewind outranks what the broker says:
nothing but the step that takes it up leaves RESTORE_PENDING. Callbacks fire events
from librdkafka's threads' calls (the producer's error callback runs in whichever
thread serves it), so transitions hold a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum

log = logging.getLogger(__name__)


class Phase(Enum):
    STARTING = "starting"  # clients being made, companions started: not ready
    READY = "ready"  # the broker answers and the last transaction committed: batches run
    AWAY = "away"  # the broker went away or a transaction failed: batches are still tried;
    # idle, a metadata round trip a second tells when the broker is back
    RESTORE_PENDING = "restore pending"  # partitions were assigned without their state: the
    # next step drops its batch and rewinds (restores, back to the committed offsets)
    FAILED = "failed"  # a fatal client error (a newer instance took the id): the next step stops
    STOPPED = "stopped"  # run() has returned or is returning


class Event(Enum):
    STARTED = "started"
    COMMITTED = "committed"
    PROBE_ANSWERED = "probe answered"
    BROKER_DOWN = "broker down"  # librdkafka: all brokers down
    TRANSACTION_FAILED = "transaction failed"
    RESTORE_FAILED = "restore failed"
    REWINDING = "rewinding"
    FATAL = "fatal"
    STOPPED = "stopped"


_LIVE = (Phase.READY, Phase.AWAY, Phase.RESTORE_PENDING)


def next_phase(phase: Phase, event: Event) -> Phase:
    """The transition function (the diagram above); an event a state does not answer
    leaves it as it is."""
    if phase is Phase.STOPPED:
        return phase
    if event is Event.STOPPED:
        return Phase.STOPPED
    if phase is Phase.FAILED:
        return phase
    if event is Event.FATAL:
        return Phase.FAILED
    if event is Event.RESTORE_FAILED:
        return Phase.RESTORE_PENDING
    if phase is Phase.RESTORE_PENDING:
        return Phase.AWAY if event is Event.REWINDING else phase
    if event is Event.STARTED and phase is Phase.STARTING:
        return Phase.READY
    if event in (Event.COMMITTED, Event.PROBE_ANSWERED) and phase in _LIVE:
        return Phase.READY
    if event in (Event.BROKER_DOWN, Event.TRANSACTION_FAILED) and phase in _LIVE:
        return Phase.AWAY
    return phase


class Lifecycle:
    """The current phase. ``on_readiness(ready)`` runs when readiness changes;
    ``readiness_changed_at`` (monotonic) says when it last did."""

    def __init__(self, name: str, on_readiness: Callable[[bool], None]) -> None:
        self._name = name
        self._on_readiness = on_readiness
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.phase = Phase.STARTING
        self.readiness_changed_at = time.monotonic()

    def fire(self, event: Event) -> Phase:
        with self._lock:
            before, self.phase = self.phase, next_phase(self.phase, event)
            ready = self.phase is Phase.READY
            changed = ready != self._ready.is_set()
            if changed:
                (self._ready.set if ready else self._ready.clear)()
                self.readiness_changed_at = time.monotonic()
        if self.phase is not before:
            log.debug("%s: %s -> %s (%s)", self._name, before.value, self.phase.value, event.value)
        if changed:
            log.info("%s: %s", self._name, "ready" if ready else "not ready")
            self._on_readiness(ready)
        return self.phase

    def ready(self) -> bool:
        return self._ready.is_set()
