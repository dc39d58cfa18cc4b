"""The dispatcher decider, keyed by system: queues offers per (tenant, priority) and
releases them to ``work`` by deficit round robin (``fair.py``) while fewer than a window
of released offers wait there untaken. Notices from the orchestrator (taken, done,
dropped) free the window and the tenants' concurrency; a released offer never taken
expires after the release timeout (by ``DispatchTick``), so the window never leaks.

Pure: time is ``at_ms`` (the log time of the command) and ``DispatchTick.now_ms``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, assert_never

from taskplane.contract.decider import NoInputs, Output, PlainState
from taskplane.contract.messages import WorkItem
from taskplane.contract.records import replace
from taskplane.contract.scheduling import (
    DEFAULT_TENANT,
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    DispatchCommand,
    DispatchEvent,
    DispatchNoted,
    DispatchNotice,
    DispatchOffer,
    DispatchRejected,
    DispatchState,
    DispatchTick,
    OfferQueued,
    QueuedOffer,
    ReleasedOffer,
    TenantLedger,
    WorkReleased,
)
from taskplane.processors.dispatch import parts
from taskplane.processors.dispatch.fair import choose, queue_key, split_key

NOTICE_KINDS = ("taken", "done", "dropped")


def item_key(run_id: str, task: str) -> str:
    return f"{run_id}/{task}"


class DispatchDecider(PlainState, NoInputs):
    """``Decider[DispatchState, DispatchCommand, DispatchEvent]``, and ``SplitState``."""

    def decide(self, state: DispatchState | None, command: DispatchCommand, at_ms: int,
               given: Any = None) -> Sequence[DispatchEvent]:
        match command:
            case DispatchOffer():
                events: list[DispatchEvent] = [_queued(command, at_ms)]
                system = command.system
            case DispatchNotice():
                if state is None or command.kind not in NOTICE_KINDS:
                    return []  # nothing of this system was dispatched, or a kind this code does not know
                events = _noted(state, command)
                system = command.system
            case DispatchTick(now_ms=now):
                if state is None:
                    return []
                events = [DispatchNoted(state.system, item.run_id, item.task, item.attempt, "expired")
                          for item in state.released.values()
                          if not item.taken and item.released_ms + state.release_timeout_ms <= now]
                system, at_ms = state.system, max(at_ms, now)
            case _:
                assert_never(command)
        after = state
        for event in events:
            after = self.evolve(after, event)
        while after is not None and (choice := choose(after, at_ms)) is not None:
            released = WorkReleased(system, choice.offer.run_id, choice.offer.task, choice.offer.attempt,
                                    choice.tenant, choice.priority, at_ms, choice.cursor, choice.credit)
            events.append(released)
            after = self.evolve(after, released)
        return events

    def evolve(self, state: DispatchState | None, event: DispatchEvent) -> DispatchState | None:
        if isinstance(event, DispatchRejected):
            return state
        current = state or DispatchState(event.system)
        match event:
            case OfferQueued():
                return _enqueue(current, event)
            case WorkReleased():
                return _release(current, event)
            case DispatchNoted():
                return _note(current, event)
            case _:
                assert_never(event)

    def next_deadline(self, state: DispatchState | None) -> int | None:
        if state is None:
            return None
        return min((item.released_ms + state.release_timeout_ms for item in state.released.values()
                    if not item.taken), default=None)

    def tick(self, now_ms: int) -> DispatchCommand:
        return DispatchTick(now_ms)

    def outputs(self, state: DispatchState | None, event: DispatchEvent) -> Iterable[Output]:
        if isinstance(event, WorkReleased):
            return [Output("work", item_key(event.run_id, event.task),
                           WorkItem(event.run_id, event.system, event.task, event.attempt))]
        return []

    # The changelog holds a head and one record per offer (``parts.py``): SplitState.
    def changed_parts(self, before: DispatchState | None, after: DispatchState | None) -> parts.Parts:
        return parts.changed_parts(before, after)

    def joined(self, stored: dict[str, Any]) -> DispatchState | None:
        return parts.joined(stored)

    def rejection(self, command: DispatchCommand, reason: str) -> DispatchEvent:
        return DispatchRejected("" if isinstance(command, DispatchTick) else command.system, reason)


def _queued(offer: DispatchOffer, at_ms: int) -> OfferQueued:
    tenant = offer.tenant or DEFAULT_TENANT
    priority = offer.priority if PRIORITY_MIN <= offer.priority <= PRIORITY_MAX else PRIORITY_DEFAULT
    return OfferQueued(offer.system, offer.run_id, offer.task, offer.attempt, tenant, priority, at_ms,
                       max(1, offer.weight), max(0, offer.max_concurrent), max(0, offer.priority_aging_ms),
                       max(1, offer.window), max(1, offer.release_timeout_ms))


def _noted(state: DispatchState, notice: DispatchNotice) -> list[DispatchEvent]:
    """The notice as an event when it changes something (an unknown offer is ignored:
    a follow-on grant, or an offer already expired)."""
    noted = DispatchNoted(notice.system, notice.run_id, notice.task, notice.attempt, notice.kind)
    if notice.kind == "dropped":
        prefix = notice.run_id + "/"
        known = any(key.startswith(prefix) for key in state.released) or any(
            offer.run_id == notice.run_id for queue in state.queues.values() for offer in queue)
        return [noted] if known else []
    item = state.released.get(item_key(notice.run_id, notice.task))
    if item is None or item.attempt != notice.attempt or (notice.kind == "taken" and item.taken):
        return []
    return [noted]


def _enqueue(state: DispatchState, event: OfferQueued) -> DispatchState:
    key = queue_key(event.tenant, event.priority)
    queue = state.queues.get(key, ())
    ledger = state.tenants.get(event.tenant) or TenantLedger(event.tenant)
    ledger = replace(ledger, weight=event.weight, max_concurrent=event.max_concurrent,
                     last_offer_ms=max(ledger.last_offer_ms, event.at_ms))
    offer = QueuedOffer(event.run_id, event.task, event.attempt, event.at_ms, state.next_seq)
    return replace(state, queues={**state.queues, key: (*queue, offer)},
                   tenants={**state.tenants, event.tenant: ledger},
                   priority_aging_ms=event.priority_aging_ms, window=event.window,
                   release_timeout_ms=event.release_timeout_ms, next_seq=state.next_seq + 1)


def _release(state: DispatchState, event: WorkReleased) -> DispatchState:
    key = queue_key(event.tenant, event.priority)
    queue = state.queues.get(key, ())
    if queue and queue[0].run_id == event.run_id and queue[0].task == event.task:
        rest = queue[1:]  # always the head, as ``fair.head`` chose it
    else:
        rest = tuple(o for o in queue if not (o.run_id == event.run_id and o.task == event.task))
    queues = dict(state.queues)
    if rest:
        queues[key] = rest
    else:
        queues.pop(key, None)
    ledger = state.tenants.get(event.tenant) or TenantLedger(event.tenant)
    ledger = replace(ledger, credit=event.credit, served=ledger.served + 1)
    released = ReleasedOffer(event.run_id, event.task, event.attempt, event.tenant, event.at_ms)
    return replace(state, queues=queues, tenants={**state.tenants, event.tenant: ledger}, cursor=event.cursor,
                   released={**state.released, item_key(event.run_id, event.task): released})


def _note(state: DispatchState, event: DispatchNoted) -> DispatchState:
    if event.kind == "dropped":
        prefix = event.run_id + "/"
        queues = {}
        for key, queue in state.queues.items():
            rest = tuple(o for o in queue if o.run_id != event.run_id)
            if rest:
                queues[key] = rest
        released = {k: v for k, v in state.released.items() if not k.startswith(prefix)}
        return replace(state, queues=queues, released=released)
    key = item_key(event.run_id, event.task)
    item = state.released.get(key)
    if item is None:
        return state
    if event.kind == "taken":
        return replace(state, released={**state.released, key: replace(item, taken=True)})
    released = dict(state.released)  # done or expired: it counts no more
    del released[key]
    return replace(state, released=released)


def backlog(state: DispatchState | None) -> dict[str, dict[int, int]]:
    """Queued offers per tenant and priority (what the console and the bench show)."""
    found: dict[str, dict[int, int]] = {}
    for key, queue in (state.queues.items() if state is not None else ()):
        tenant, priority = split_key(key)
        found.setdefault(tenant, {})[priority] = len(queue)
    return found
