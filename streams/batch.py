"""What one transaction contains: its input positions, the undo log of the state it
changed, its changelog writes, and what its commit or failure means for memory.

A ``Batch`` lives from ``begin`` until its commit returned, or until the rewind after a
failed commit has settled every partition it touched. Records, events and outputs are
produced into the transactional producer as they are decided; the batch only keeps
what it needs to commit them together with the state and the offsets, or to undo them
in memory: each key's (state, timer, retirement) as the batch found it, the first input
offset per partition (the batch did not commit while the group's offset is still at or
before it) and the offset after the last one (it did, when the offset is there).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from enum import Enum
from typing import Any, Generic, TypeVar

from confluent_kafka import Producer, TopicPartition

from taskplane.contract.decider import SplitState, part_key
from taskplane.streams.partition_state import ABSENT, Entry, PartitionState
from taskplane.streams.serde import Meta, Serde
from taskplane.streams.transactions import TransactionalProducer

S = TypeVar("S")


def state_meta(key: str) -> Meta:
    """Fixed envelope for state snapshots, so equal states encode to equal bytes."""
    return Meta(
        message_id=key, key=key, type="state", schema_version=1, causation_id=None, correlation_id=None, timestamp_ms=0
    )


def new_ids() -> Callable[[], str]:
    """Message ids for one transaction's events and outputs: a random batch id and a
    sequence number. Unique across the keys one Tick wakes, across instances, and
    across a replay of the same commands; ``causation_id`` links each to its command."""
    batch, sequence = uuid.uuid4().hex, itertools.count()
    return lambda: f"{batch}/{next(sequence)}"


class Fate(Enum):
    """What the group's committed offset says of a failed batch on one partition."""

    NOT_COMMITTED = "not committed"  # at or before its first record: undone in memory
    COMMITTED = "committed"  # at its end: only the commit's reply was lost; memory kept
    UNKNOWN = "unknown"  # elsewhere: another instance committed meanwhile; restore


class Batch(Generic[S]):
    """One transaction's input positions, undo log and changelog writes."""

    __slots__ = ("next_id", "ends", "_first", "_undo", "_changed", "_wrote_unsaved")

    def __init__(self) -> None:
        self.next_id = new_ids()
        self.ends: dict[int, int] = {}  # per partition, the offset after the batch's last record
        self._first: dict[int, int] = {}  # per partition, the batch's first record
        # Per partition: the state object the entries belong to (a partition revoked and
        # assigned again meanwhile has a new one, restored: its undo is void) and each
        # key's entry as the batch found it.
        self._undo: dict[int, tuple[PartitionState[S], dict[str, Entry]]] = {}
        self._changed: dict[int, set[str]] = {}  # keys whose state goes to the changelog
        self._wrote_unsaved = False  # the keys the changelog lacked went out in this transaction

    def read(self, partition: int, offset: int) -> None:
        """The batch took the input record at ``offset``."""
        self.ends[partition] = offset + 1
        self._first.setdefault(partition, offset)

    def changing(self, partition: int, owned: PartitionState[S], key: str) -> None:
        """``key`` is about to change: its entry goes in the undo log (once per batch),
        and its new state to the changelog."""
        self.found(partition, owned, key, owned.entry(key))
        self._changed.setdefault(partition, set()).add(key)

    def found(self, partition: int, owned: PartitionState[S], key: str, entry: Entry) -> None:
        """``entry`` is ``key`` as the batch found it, for the undo log (the first one counts):
        a Tick takes due timers before their keys change (``PartitionState.due``)."""
        undo = self._undo.get(partition)
        if undo is None or undo[0] is not owned:
            undo = self._undo[partition] = (owned, {})
        undo[1].setdefault(key, entry)

    def write_changelog(self, producer: Producer, topic: str, partitions: dict[int, PartitionState[S]],
                        serde: Serde, snapshot: Callable[[S], Any], split: SplitState | None = None) -> None:
        """Each changed key's state (None: a tombstone) on its partition, inside the
        transaction: restored state always matches the committed offsets. A split state
        writes the parts that differ from the state as the batch found it (what the
        changelog holds), all of them for a key the changelog lacks.

        Keys the changelog lacks (``unsaved``, after a rebuild from the events) go out only
        in a transaction that commits input offsets: when its commit fails, those offsets
        tell whether it went through (``Batch.settle``), and the rewind forgets ``unsaved``
        if it did. A transaction of Ticks alone commits none: had its reply been lost after
        it committed, they would stay ``unsaved``, and the next full write would leave in
        the changelog the parts gone since (a split state's offers, released or dropped,
        back on a restore). They go with the Ticks' own records, one round trip later."""
        self._wrote_unsaved = any(partition in partitions for partition in self.ends)
        for partition, owned in partitions.items():
            keys = self._changed.get(partition)
            if owned.unsaved and self._wrote_unsaved:
                keys = owned.unsaved | (keys or set())
            for key in keys or ():
                state = owned.states.get(key)
                if split is not None:
                    before = None if key in owned.unsaved else self._found(partition, owned, key)
                    for part, stored in split.changed_parts(before, state):
                        name = part_key(key, part)
                        value = None if stored is None else serde.encode(stored, state_meta(name))
                        producer.produce(topic, value, name, partition)
                    continue
                value = None if state is None else serde.encode(snapshot(state), state_meta(key))
                producer.produce(topic, value, key, partition)

    def _found(self, partition: int, owned: PartitionState[S], key: str) -> Any:
        """``key``'s state as the batch found it (the last committed), None for none."""
        undo = self._undo.get(partition)
        if undo is None or undo[0] is not owned or key not in undo[1]:
            return owned.states.get(key)  # not changed by this batch
        state = undo[1][key][0]
        return None if state is ABSENT else state

    def commit(self, transactions: TransactionalProducer, topic: str, group_metadata: Any,
               partitions: dict[int, PartitionState[S]]) -> float:
        """The input positions of the partitions still owned (records of one revoked
        while the batch was polled are left to its next owner), then the commit. Offsets
        last: their round trips overlap the produce requests (docs/runtime.md). Returns
        the seconds the commit spent on retries."""
        positions = [TopicPartition(topic, p, o) for p, o in self.ends.items() if p in partitions]
        retried = transactions.commit(positions, group_metadata)
        for position in positions:
            partitions[position.partition].committed_to = position.offset
        for owned in partitions.values():
            if self._wrote_unsaved:
                owned.unsaved.clear()
            if owned.hints is not None:
                owned.hints.commit()
        return retried

    def settle(self, partition: int, owned: PartitionState[S], committed: int) -> Fate:
        """After a failed commit: the batch's fate on ``partition`` from the group's
        committed offset there, with memory put back when it did not commit."""
        undo = self._undo.pop(partition, None)
        first = self._first.pop(partition, None)
        if undo is not None and undo[0] is not owned:
            undo, first = None, None  # re-assigned and restored since: nothing of it to undo
        if first is None or committed <= first:
            for key, entry in (undo[1].items() if undo is not None else ()):
                owned.put_back(key, entry)
            if owned.hints is not None:
                owned.hints.roll_back()
            return Fate.NOT_COMMITTED
        if committed == self.ends.get(partition):
            if owned.hints is not None:
                owned.hints.commit()
            return Fate.COMMITTED
        return Fate.UNKNOWN
