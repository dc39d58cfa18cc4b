"""A batch's records through the decider: decode (poison on failure), decide and evolve
per key, produce the events and derived records, note the state change in the batch.

Everything produced here goes into the open transaction; nothing is committed here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from taskplane.contract.decider import Decider, step
from taskplane.streams.batch import Batch
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.partition_state import PartitionState
from taskplane.streams.poison import decoded_input, poison_headers
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.serde import SCHEMA_VERSION, Meta, Serde
from taskplane.streams.topics import Topics

log = logging.getLogger(__name__)

S = TypeVar("S")


class Applier(Generic[S]):
    """Applies records and Ticks of one processor's input to its partitions' state."""

    def __init__(self, name: str, decider: Decider[S, Any, Any], topics: Topics, events: str, serde: Serde,
                 observer: RuntimeObserver, inputs: tuple[type, ...] = ()) -> None:
        self._name = name
        self._inputs = inputs  # the messages the decider takes; any other goes to `poison`
        self._decider = decider
        self._topics = topics
        self._events = events
        self._serde = serde
        self._observer = observer
        self._observes_events = type(observer).event is not RuntimeObserver.event
        self._tick_type = type(decider.tick(0))
        self._encoders: dict[type, tuple[Callable[..., bytes], str]] = {}
        self._output_topics: dict[str, str] = {}

    def records(self, records: list[Message], batch: Batch[S], partitions: dict[int, PartitionState[S]],
                producer: Producer) -> None:
        """Apply ``records``, noting in ``batch`` each owned partition's input positions."""
        decode = self._serde.decode
        inputs = self._inputs
        tick_type = self._tick_type
        dropped = 0
        for record in records:
            if record.error() is not None:
                if record.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(record.error())
                continue
            partition = record.partition()
            owned = partitions.get(partition)
            if owned is None:
                # Revoked while the batch was being polled (a batch takes several consume
                # calls; a rebalance callback runs in any of them): the partition's state is
                # gone, so its records are left, uncommitted, for its next owner.
                dropped += 1
                continue
            batch.read(partition, record.offset())
            try:
                key, meta, command = decoded_input(decode, record.value(), record.key(), inputs)
            except SerdeError as error:
                self._poison(producer, record, error)
                continue
            if type(command) is tick_type:
                now_ms: int = command.now_ms  # type: ignore[attr-defined]
                found = functools.partial(batch.found, partition, owned)  # the timers it takes, for the undo log
                for due in owned.due(now_ms, found):
                    self.apply(batch, producer, owned, partition, due, command, now_ms, meta)
            else:
                self.apply(batch, producer, owned, partition, key, command, record.timestamp()[1], meta)
        if dropped:
            log.info("%s: left %d records of partitions revoked during the batch to their next owner",
                     self._name, dropped)

    def apply(self, batch: Batch[S], producer: Producer, owned: PartitionState[S], partition: int, key: str,
              command: Any, at_ms: int, meta: Meta) -> None:
        """One command for one key: its events on the command's partition, its outputs,
        the key's new state, timer and retirement (the old ones in the batch's undo log)."""
        decider = self._decider
        state, events, outputs, failure = step(decider, owned.states.get(key), command, at_ms, owned.hints)
        if failure is not None:  # a decider bug must not crash-loop the partition: a rejection
            log.error("%s: decider failed on %s", self._name, type(command).__name__, exc_info=failure)
        if not events:
            return
        produce = producer.produce
        encoders = self._encoders
        cause = meta.message_id
        correlation = meta.correlation_id or key
        events_topic = self._events
        next_id = batch.next_id
        for event in events:
            encode, name = encoders.get(type(event)) or self._encoder(type(event))
            try:  # the envelope's fields in schema order: no Meta per event
                value = encode(event, next_id(), key, name, SCHEMA_VERSION, cause, correlation, at_ms)
            except Exception as error:
                raise SerdeError(f"cannot encode {name}: {error!r}") from error
            produce(events_topic, value, key, partition, timestamp=at_ms)
        if self._observes_events:
            for event in events:
                self._observer.event(self._name, event)
        for output in outputs:
            body = output.value
            encode, name = encoders.get(type(body)) or self._encoder(type(body))
            try:
                value = encode(body, next_id(), output.key, name, SCHEMA_VERSION, cause, correlation, at_ms)
            except Exception as error:
                raise SerdeError(f"cannot encode {name}: {error!r}") from error
            produce(self._output_topic(output.topic), value, output.key, timestamp=at_ms)
        batch.changing(partition, owned, key)
        if state is None:  # forgotten: a tombstone on the changelog, nothing kept here
            owned.states.pop(key, None)
            owned.timers.set(key, None)
            owned.retiring.set(key, None)
        else:
            owned.states[key] = state
            deadline = decider.next_deadline(state)
            if deadline is not None or key in owned.timers.at:
                owned.timers.set(key, deadline)
            retire_at = decider.retire_at(state)
            if retire_at is not None or key in owned.retiring.at:
                owned.retiring.set(key, retire_at)

    def _encoder(self, cls: type) -> tuple[Callable[..., bytes], str]:
        entry = self._encoders[cls] = (self._serde.encoder_of(cls), cls.__name__)
        return entry

    def _output_topic(self, role: str) -> str:
        name = self._output_topics.get(role)
        if name is None:
            name = self._output_topics[role] = self._topics.name(role)
        return name

    def _poison(self, producer: Producer, record: Message, error: Exception) -> None:
        """An undecodable record aside on ``poison``, inside the same transaction."""
        producer.produce(self._topics.name("poison"), record.value(), record.key(),
                         headers=poison_headers(record, error, self._name))
        self._observer.poison(self._name, record.topic(), str(error))
        log.warning("%s: poison record at %s[%d]@%d: %s", self._name, record.topic(), record.partition(),
                    record.offset(), error)
