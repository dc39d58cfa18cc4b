"""State of newly assigned partitions, read back from the changelog (or, when the
changelog topic is gone, or one of its partitions was never written to, folded from the
events and written again with the next commit).

The changelog partition is read to its end (EOF at the last stable offset) and only
each key's last value is decoded: a tombstoned or superseded record costs its bytes,
not a decode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from confluent_kafka import TopicPartition

from taskplane.contract.decider import PART_SEP, Decider, Hints, SplitState
from taskplane.streams import kafka_clients
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.partition_state import PartitionState
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics, TopicSpec, ensure_topics

log = logging.getLogger(__name__)

S = TypeVar("S")


def stored_states(decider: Decider[S, Any, Any], serde: Serde, values: dict[str, bytes]) -> dict[str, S]:
    """The states a changelog's last values (by changelog key) stand for: one record
    each, or a split state's parts joined by key (``contract.decider.SplitState``)."""
    if not isinstance(decider, SplitState):
        return {key: decider.restored(serde.decode(value)[1]) for key, value in values.items()}
    grouped: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        key, _, part = name.partition(PART_SEP)
        grouped.setdefault(key, {})[part] = serde.decode(value)[1]
    states = {key: decider.joined(parts) for key, parts in grouped.items()}
    return {key: state for key, state in states.items() if state is not None}


def stale_layouts(decider: Decider[S, Any, Any], values: dict[str, bytes], states: dict[str, S]) -> set[str]:
    """Keys of a split state whose stored records are not the ones a full write of the
    joined state gives (a head written before the split holds its parts inline): the
    next commit writes them in full, or a later diff against the joined state would
    never write those parts out."""
    if not isinstance(decider, SplitState):
        return set()
    stored: dict[str, set[str]] = {}
    for name in values:
        key, _, part = name.partition(PART_SEP)
        stored.setdefault(key, set()).add(part)
    return {key for key, state in states.items()
            if {part for part, value in decider.changed_parts(None, state) if value is not None} != stored.get(key)}


class Restorer(Generic[S]):
    def __init__(self, name: str, decider: Decider[S, Any, Any], kafka_config: dict[str, Any], topics: Topics,
                 changelog: str, events: str, changelog_spec: TopicSpec | None, serde: Serde,
                 observer: RuntimeObserver, call_timeout_s: float,
                 hints: Callable[[], Hints[S, Any, Any]] | None = None) -> None:
        self._name = name
        self._hints = hints  # makes an assigned partition's hint source
        self._decider = decider
        self._kafka = kafka_config
        self._topics = topics
        self._changelog = changelog
        self._events = events
        self._changelog_spec = changelog_spec  # recreated from this when it was deleted
        self._serde = serde
        self._observer = observer
        self._timeout_s = call_timeout_s
        self._group = f"{name}-restore"  # a label only: nothing is committed

    def restore(self, partitions: list[int]) -> dict[int, PartitionState[S]]:
        """Each partition's state, timers and retirements. Raises ``KafkaException`` or
        ``StreamsError`` when the broker goes away meanwhile (the caller retries)."""
        started = time.perf_counter()
        hints = self._hints
        restored = {p: PartitionState[S](hints=None if hints is None else hints()) for p in partitions}
        if not partitions:
            return restored
        decider = self._decider
        if self._changelog_exists():
            stored: dict[int, dict[str, bytes]] = {p: {} for p in partitions}
            for partition, key, value in read_to_end(self._kafka, self._changelog, partitions, self._group):
                if value is None:
                    stored[partition].pop(key, None)
                else:
                    stored[partition][key] = value
            for partition, values in stored.items():  # decoded once per key, not per write
                restored[partition].states = stored_states(decider, self._serde, values)
                restored[partition].unsaved.update(stale_layouts(decider, values, restored[partition].states))
            # A changelog partition no record was ever written to (its end offset is 0) next
            # to events: the changelog was lost and created again, and the instance that
            # folded the events stopped before its first commit wrote them. Fold them again.
            lost = self._never_written([p for p, values in stored.items() if not values])
            if lost and self._fold(lost, restored):  # nothing folded: new topics, nothing lost
                log.warning("%s: changelog %s partitions %s never written; folded %s", self._name,
                            self._changelog, lost, self._events)
        else:
            log.warning("%s: changelog %s missing; folding %s", self._name, self._changelog, self._events)
            if self._changelog_spec is not None:
                ensure_topics(kafka_clients.admin(self._kafka), self._topics, [self._changelog_spec])
            self._fold(partitions, restored)
        for owned in restored.values():
            for key, state in owned.states.items():
                owned.timers.set(key, decider.next_deadline(state))  # type: ignore[arg-type]
                owned.retiring.set(key, decider.retire_at(state))  # type: ignore[arg-type]
        count = sum(len(p.states) for p in restored.values())
        self._observer.restored(self._name, count, time.perf_counter() - started)
        log.info("%s: restored %d keys on %s in %.3fs", self._name, count, partitions, time.perf_counter() - started)
        return restored

    def _fold(self, partitions: list[int], restored: dict[int, PartitionState[S]]) -> int:
        """``partitions``' states folded from the events, for the next commit to write in
        full (``unsaved``): what the changelog would hold. Returns how many keys."""
        decider = self._decider
        for partition, key, value in read_to_end(self._kafka, self._events, partitions, self._group):
            if value is None:
                continue
            states = restored[partition].states
            state = decider.evolve(states.get(key), self._serde.decode(value)[1])  # type: ignore[arg-type]
            if state is None:
                states.pop(key, None)
            else:
                states[key] = state
        for partition in partitions:  # re-seed the changelog with the next commit
            restored[partition].unsaved.update(restored[partition].states)
        return sum(len(restored[partition].states) for partition in partitions)

    def _never_written(self, partitions: list[int]) -> list[int]:
        """The changelog partitions whose end offset is 0 (compaction never lowers it)."""
        if not partitions:
            return []
        reader = kafka_clients.consumer(self._kafka, self._group)
        try:
            return [p for p in partitions
                    if reader.get_watermark_offsets(TopicPartition(self._changelog, p), timeout=self._timeout_s)[1] == 0]
        finally:
            reader.close()

    def _changelog_exists(self) -> bool:
        topics = kafka_clients.admin(self._kafka).list_topics(self._changelog, timeout=self._timeout_s).topics
        return self._changelog in topics and not topics[self._changelog].error
