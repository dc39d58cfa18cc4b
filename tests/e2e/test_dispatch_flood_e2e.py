"""A flood of one system's offers on the real broker (issue 27): with the state split
into a head and one record per offer (processors/dispatch/parts.py), 24,000 queued
offers keep the dispatcher committing and releasing; the largest changelog record stays
the size of one offer, where the whole state as one record (the design before) would be
past the broker's 1 MB limit; and a restarted dispatcher restores the same state."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from taskplane.contract.scheduling import DispatchNotice, DispatchOffer, OfferQueued, WorkReleased
from taskplane.processors.dispatch.app import dispatcher_runtime
from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.processors.dispatch.verify import read_dispatch, verify_dispatch
from taskplane.streams import runtime_clients
from taskplane.streams.batch import state_meta
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.restore import stored_states
from taskplane.streams.runtime import ProcessorRuntime
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.serde import Serde, new_meta
from taskplane.streams.topics import Topics, catalog_spec, ensure_topics
from taskplane.testing import EventLog
from tests.streams.failing_commits import FailingCommits

pytestmark = pytest.mark.kafka

SYSTEM = "flood-e2e"
FLOOD = 24_000  # at ~47 bytes an offer, past the broker's 1 MB as one record
WINDOW = 32
SERDE = Serde()


class Dispatcher:
    def __init__(self, kafka: dict[str, Any], topics: Topics, instance: str, **tuning: Any) -> None:
        settings = RuntimeSettings(instance_id=instance, group_id=f"{topics.prefix}-dispatcher", **tuning)
        self.runtime: ProcessorRuntime[Any, Any, Any] = dispatcher_runtime(kafka, topics, settings)
        self.thread = threading.Thread(target=self.runtime.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.runtime.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def topics(kafka_config: dict[str, Any], unique_prefix: str) -> Topics:
    topics = Topics(unique_prefix)
    roles = ("dispatch", "dispatch-events", "dispatcher-changelog", "work", "poison")
    ensure_topics(AdminClient(kafka_config), topics, [catalog_spec(role) for role in roles])
    return topics


@pytest.fixture
def dispatch_log(kafka_config: dict[str, Any], topics: Topics) -> Iterator[EventLog]:
    with EventLog(kafka_config, topics.dispatch_events) as log:
        yield log


def send(kafka: dict[str, Any], topics: Topics, commands: list[Any]) -> None:
    producer = Producer({**kafka, "linger.ms": 20})
    for command in commands:
        value = SERDE.encode(command, new_meta(SYSTEM, type(command).__name__, 0))
        while True:
            try:
                producer.produce(topics.dispatch, value, SYSTEM)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def test_a_flood_of_24000_offers_keeps_releasing_and_restores(kafka_config: dict[str, Any], topics: Topics,
                                                              dispatch_log: EventLog) -> None:
    dispatcher = Dispatcher(kafka_config, topics, "one")
    try:
        offers = [DispatchOffer(SYSTEM, uuid.uuid4().hex, "step", 1, "flood" if i % 100 else "small",
                                3, 1, 0, 30_000, WINDOW, 600_000) for i in range(FLOOD)]
        send(kafka_config, topics, offers)
        dispatch_log.wait_for(lambda log: len(log.events(OfferQueued)) >= FLOOD, 300)
        # the window released WINDOW offers; each one done lets the next go: it keeps deciding
        done: set[str] = set()
        for _round in range(4):
            released = dispatch_log.wait_for(lambda log: len(log.events(WorkReleased)) >= len(done) + WINDOW, 120)
            fresh = [e for e in dispatch_log.events(WorkReleased) if e.run_id not in done]
            assert released and len(fresh) == WINDOW
            send(kafka_config, topics, [DispatchNotice(SYSTEM, e.run_id, e.task, e.attempt, kind)
                                        for e in fresh for kind in ("taken", "done")])
            done.update(e.run_id for e in fresh)
        dispatch_log.wait_for(lambda log: len(log.events(WorkReleased)) >= 5 * WINDOW, 120)
        # the small tenant got its turns inside the flood (one quantum each)
        assert sum(1 for e in dispatch_log.events(WorkReleased) if e.tenant == "small") >= 2
        live = dispatcher.runtime.states()[SYSTEM]
    finally:
        dispatcher.stop()

    assert sum(len(queue) for queue in live.queues.values()) == FLOOD - 5 * WINDOW
    values: dict[str, bytes] = {}
    largest = 0
    for _partition, key, value in read_to_end(kafka_config, topics.dispatcher_changelog):
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
            largest = max(largest, len(value))
    whole = len(SERDE.encode(live, state_meta(SYSTEM)))  # the state as one record, as before
    print(f"\nlargest dispatcher-changelog record at {FLOOD} offers: {largest} bytes; "
          f"the whole state as one record: {whole} bytes")
    assert largest < 1_000 and whole > 1_048_588  # message.max.bytes
    assert stored_states(DispatchDecider(), SERDE, values)[SYSTEM] == live

    # the runtime's own restore (a new instance) has the same state, and the fold of the events too
    restarted = Dispatcher(kafka_config, topics, "two")
    try:
        dispatch_log.wait_for(lambda _log: SYSTEM in restarted.runtime.states(), 120)
        assert restarted.runtime.states()[SYSTEM] == live
    finally:
        restarted.stop()
    verdict = verify_dispatch(read_dispatch(kafka_config, topics))  # taskplane verify --processor dispatcher
    assert verdict.total("decisions") >= FLOOD and not verdict.divergences, verdict.divergences[:3]
    folded: Any = None
    for event in dispatch_log.all_events():
        folded = DispatchDecider().evolve(folded, event)
    assert folded == live


def changelog_state(kafka: dict[str, Any], topics: Topics) -> Any:
    values: dict[str, bytes] = {}
    for _partition, key, value in read_to_end(kafka, topics.dispatcher_changelog):
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return stored_states(DispatchDecider(), SERDE, values).get(SYSTEM)


@pytest.mark.parametrize("lost_reply", [False, True], ids=["not-committed", "reply-lost"])
def test_failed_commits_leave_the_per_offer_changelog_equal_to_the_state(
        kafka_config: dict[str, Any], topics: Topics, dispatch_log: EventLog, monkeypatch: pytest.MonkeyPatch,
        lost_reply: bool) -> None:
    """A commit writes the records that differ from the state as its batch found it: a
    batch undone in memory (not committed) or kept (its reply lost) must leave the next
    batch's differences right, or the changelog would hold offers gone or lack some."""
    flaky = type("Flaky", (FailingCommits,), {"every": 4, "lost_reply": lost_reply, "calls": 0, "failures": 0})
    monkeypatch.setattr(runtime_clients, "TransactionalProducer", flaky)
    dispatcher = Dispatcher(kafka_config, topics, "flaky", max_batch_records=20, tick_grace_after_failure_ms=0)
    try:
        done: set[str] = set()
        for round_ in range(12):
            send(kafka_config, topics, [DispatchOffer(SYSTEM, f"r{round_}-{i}", "step", 1, f"t{i % 3}", 1 + i % 5,
                                                      1, 0, 30_000, 8, 600_000) for i in range(40)])
            dispatch_log.wait_for(lambda log, n=40 * (round_ + 1): len(log.events(OfferQueued)) >= n, 120)
            fresh = [e for e in dispatch_log.events(WorkReleased) if e.run_id not in done]
            send(kafka_config, topics, [DispatchNotice(SYSTEM, e.run_id, e.task, e.attempt, kind)
                                        for e in fresh for kind in ("taken", "done")]
                 + [DispatchNotice(SYSTEM, f"r{round_}-{round_}", "", 0, "dropped")])
            done.update(e.run_id for e in fresh)
        send(kafka_config, topics, [DispatchOffer(SYSTEM, "last", "step", 1, "t0", 3, 1, 0, 30_000, 8, 600_000)])
        dispatch_log.wait_for(lambda log: any(e.run_id == "last" for e in log.events(OfferQueued)), 120)
        live = dispatcher.runtime.states()[SYSTEM]
    finally:
        dispatcher.stop()
    assert flaky.failures >= 3, flaky.failures
    assert changelog_state(kafka_config, topics) == live
    folded: Any = None
    for event in dispatch_log.all_events():
        folded = DispatchDecider().evolve(folded, event)
    assert folded == live
