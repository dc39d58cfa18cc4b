"""A batch's records and its undo log, in process (no broker): what the runtime
applies, commits and puts back."""

from __future__ import annotations

from typing import Any

from bench.counter.app import counter_serde, counter_spec
from bench.counter.decider import CounterDecider
from taskplane.streams.apply import Applier
from taskplane.streams.batch import Batch, Fate
from taskplane.streams.partition_state import PartitionState
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.topics import Topics


class _Record:
    """What ``Applier.records`` reads of a confluent_kafka.Message."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        raise AssertionError("a record of a partition not owned must not be decoded")


def test_records_of_a_partition_revoked_while_the_batch_was_polled_are_left_to_its_next_owner() -> None:
    """A batch is polled in several consume calls and a rebalance callback can run in any
    of them: records fetched before a revocation arrive for a partition whose state is
    gone. They are not applied and their offsets are not committed (bench.failover's
    breaker died on 'partition 0 of ... is not assigned' before)."""
    spec = counter_spec()
    applier = Applier[Any](spec.name, CounterDecider(), Topics("unit"), "unit.events", counter_serde(),
                           RuntimeObserver())
    batch = Batch[Any]()
    applier.records([_Record(0, 7), _Record(0, 8)], batch, {1: PartitionState()}, producer=None)  # type: ignore[list-item,arg-type]
    assert batch.ends == {}
    assert batch.settle(1, PartitionState(), 0) is Fate.NOT_COMMITTED


def _owned() -> PartitionState[Any]:
    owned: PartitionState[Any] = PartitionState()
    owned.states["a"] = "a0"
    owned.timers.set("a", 100)
    return owned


def _changed(batch: Batch[Any], owned: PartitionState[Any]) -> None:
    batch.read(3, 10)
    batch.read(3, 11)
    batch.changing(3, owned, "a")
    owned.states["a"] = "a1"
    owned.timers.set("a", 200)
    batch.changing(3, owned, "b")
    owned.states["b"] = "b1"
    batch.changing(3, owned, "a")  # a second change: the undo log keeps the first entry
    owned.states["a"] = "a2"


def test_a_batch_that_did_not_commit_is_undone_in_memory() -> None:
    owned, batch = _owned(), Batch[Any]()
    _changed(batch, owned)
    assert batch.settle(3, owned, 10) is Fate.NOT_COMMITTED
    assert owned.states == {"a": "a0"} and owned.timers.at == {"a": 100}


def test_a_batch_whose_commit_reply_was_lost_is_kept() -> None:
    owned, batch = _owned(), Batch[Any]()
    _changed(batch, owned)
    assert batch.settle(3, owned, 12) is Fate.COMMITTED
    assert owned.states == {"a": "a2", "b": "b1"}


def test_a_partition_that_moved_on_elsewhere_is_unknown_and_one_restored_since_is_not_undone() -> None:
    owned, batch = _owned(), Batch[Any]()
    _changed(batch, owned)
    assert batch.settle(3, owned, 11) is Fate.UNKNOWN
    again, restored = Batch[Any](), _owned()
    _changed(again, owned)
    assert again.settle(3, restored, 10) is Fate.NOT_COMMITTED  # a new state object: its undo is void
    assert restored.states == {"a": "a0"}


def test_a_tick_batch_that_did_not_commit_puts_the_due_timers_back() -> None:
    """A Tick takes the due keys' timers before the keys change. Undone without them, a
    key whose tick batch failed was never ticked again (bench.chaos: the cron processor
    fired no slot after a transaction it had to abandon)."""
    owned, batch = _owned(), Batch[Any]()
    owned.retiring.set("r", 120)
    batch.read(3, 10)
    due = owned.due(150, lambda key, entry: batch.found(3, owned, key, entry))
    assert due == ["a", "r"] and owned.timers.at == {} and owned.retiring.at == {}
    batch.changing(3, owned, "a")
    owned.states["a"] = "a1"
    owned.timers.set("a", 300)
    assert batch.settle(3, owned, 10) is Fate.NOT_COMMITTED
    assert owned.states == {"a": "a0"} and owned.timers.at == {"a": 100} and owned.retiring.at == {"r": 120}
