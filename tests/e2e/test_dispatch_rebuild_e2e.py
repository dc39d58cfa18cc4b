"""The dispatcher's per-offer changelog after a rebuild from its events (the changelog
lost), when the first transaction is a batch of Ticks alone and its commit's reply is
lost (it did commit): that transaction wrote the folded state in full (a head and a
record per offer) and committed no input offset, so its fate cannot be read from the
offsets. Had the keys stayed "unsaved", the next batch would write its state in full
again, without tombstones for the offers gone meanwhile, and a restore would find those
offers still queued or released (docs/scheduling.md, "Limits")."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from taskplane.contract.scheduling import DispatchOffer, DispatchState, OfferQueued, WorkReleased
from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.processors.dispatch.verify import read_dispatch, verify_dispatch
from taskplane.streams import runtime_clients
from taskplane.streams.topics import Topics, catalog_spec, ensure_topics
from taskplane.streams.transactions import TransactionalProducer, TransactionWedged
from taskplane.testing import EventLog
from tests.e2e.test_dispatch_flood_e2e import SYSTEM, Dispatcher, changelog_state, send

pytestmark = pytest.mark.kafka

RELEASE_TIMEOUT_MS = 8_000  # past the first instance's stop: it ticks none


class TicksReplyLost(TransactionalProducer):
    """The first commit of a transaction without input offsets (Ticks alone) commits, and
    its reply is lost."""

    failures = 0

    def commit(self, positions: list[TopicPartition], group_metadata: Any) -> float:
        if positions or type(self).failures:
            return super().commit(positions, group_metadata)
        type(self).failures += 1
        super().commit(positions, group_metadata)
        raise TransactionWedged("commit_transaction did not return (injected)")


def test_a_lost_reply_of_a_ticks_only_commit_after_a_rebuild_leaves_no_stale_offer(
        kafka_config: dict[str, Any], unique_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topics = Topics(unique_prefix)
    roles = ("dispatch", "dispatch-events", "dispatcher-changelog", "work", "poison")
    ensure_topics(AdminClient(kafka_config), topics, [catalog_spec(role) for role in roles])
    offers = [DispatchOffer(SYSTEM, f"r{n}", "step", 1, "t", 3, 1, 0, 30_000, 2, RELEASE_TIMEOUT_MS)
              for n in range(6)]
    with EventLog(kafka_config, topics.dispatch_events) as log:
        first = Dispatcher(kafka_config, topics, "one")
        try:
            send(kafka_config, topics, offers)
            log.wait_for(lambda events: len(events.events(OfferQueued)) == len(offers)
                         and len(events.events(WorkReleased)) >= 2, 60)
        finally:
            first.stop()
        released = log.events(WorkReleased)

        admin = AdminClient(kafka_config)  # the changelog lost: the next instance folds the events
        admin.delete_topics([topics.dispatcher_changelog])[topics.dispatcher_changelog].result(30)
        while topics.dispatcher_changelog in admin.list_topics(timeout=10).topics:
            time.sleep(0.2)
        # Log time past the released offers' timeout: the restored timers are due at once,
        # so the new instance's first transaction is a Tick alone (nothing new on `dispatch`).
        while time.time() * 1000 < released[-1].at_ms + RELEASE_TIMEOUT_MS + 200:
            time.sleep(0.1)
        monkeypatch.setattr(runtime_clients, "TransactionalProducer", TicksReplyLost)
        second = Dispatcher(kafka_config, topics, "two")
        try:
            # the expiry frees the window: the next two are released
            log.wait_for(lambda events: len(events.events(WorkReleased)) >= len(released) + 2, 60)
        finally:
            second.stop()
        folded: Any = None  # the state every commit stood for
        for event in log.all_events():
            folded = DispatchDecider().evolve(folded, event)
    assert TicksReplyLost.failures == 1
    stored = changelog_state(kafka_config, topics)  # what a restore would find
    assert isinstance(stored, DispatchState) and isinstance(folded, DispatchState)
    assert stored.released.keys() == folded.released.keys() and stored.queues == folded.queues
    assert stored == folded
    verdict = verify_dispatch(read_dispatch(kafka_config, topics))  # taskplane verify --processor dispatcher
    assert not verdict.divergences and not verdict.state_mismatches and verdict.states_compared == 1


def test_an_instance_stopped_before_the_rebuilds_first_commit_loses_nothing(
        kafka_config: dict[str, Any], unique_prefix: str) -> None:
    """The changelog lost: the next instance folds the events into memory, and the changelog
    (created again, empty) gets them with its first commit. Stopped or killed before that
    commit, it leaves an empty changelog next to the events: the instance after it must
    fold them again, not start from nothing (its queued offers would never be released)."""
    topics = Topics(unique_prefix)
    roles = ("dispatch", "dispatch-events", "dispatcher-changelog", "work", "poison")
    ensure_topics(AdminClient(kafka_config), topics, [catalog_spec(role) for role in roles])
    offers = [DispatchOffer(SYSTEM, f"r{n}", "step", 1, "t", 3, 1, 0, 30_000, 1, 600_000) for n in range(4)]
    with EventLog(kafka_config, topics.dispatch_events) as log:
        first = Dispatcher(kafka_config, topics, "one")
        try:
            send(kafka_config, topics, offers)
            log.wait_for(lambda events: len(events.events(OfferQueued)) == len(offers), 60)
            before = first.runtime.states()[SYSTEM]
        finally:
            first.stop()
    admin = AdminClient(kafka_config)
    admin.delete_topics([topics.dispatcher_changelog])[topics.dispatcher_changelog].result(30)
    while topics.dispatcher_changelog in admin.list_topics(timeout=10).topics:
        time.sleep(0.2)
    for instance in ("two", "three"):  # "two" has nothing to decide (no input, no timer due): no commit
        restarted = Dispatcher(kafka_config, topics, instance)
        try:
            deadline = time.monotonic() + 60
            while SYSTEM not in restarted.runtime.states() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert restarted.runtime.states().get(SYSTEM) == before, instance
        finally:
            restarted.stop()
