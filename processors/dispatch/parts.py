"""How a system's dispatcher state is stored: a head and one record per offer.

The head is the ``DispatchState`` without its queues and released offers: the round
robin's bookkeeping (tenants' weights, caps and credit, the cursor, the window, the next
offer number), which grows with the tenants, not the backlog. Each queued offer is a
record ``q/<seq>`` and each released one ``r/<run>/<task>``; releasing or dropping an
offer tombstones its record. So a commit writes what its batch changed (a flood's new
offers, the released ones), and no record passes the broker's message limit however long
the backlog grows (docs/scheduling.md, "Limits"). ``contract.decider.SplitState``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from taskplane.contract.records import replace
from taskplane.contract.scheduling import (
    DispatchQueuedPart,
    DispatchReleasedPart,
    DispatchState,
    QueuedOffer,
    ReleasedOffer,
)
from taskplane.processors.dispatch.fair import queue_key, split_key

Parts = Iterator[tuple[str, object | None]]


def head(state: DispatchState) -> DispatchState:
    return replace(state, queues={}, released={})


def queued_part(seq: int) -> str:
    return f"q/{seq}"


def released_part(key: str) -> str:
    return f"r/{key}"


def changed_parts(before: DispatchState | None, after: DispatchState | None) -> Parts:
    """The records to write going from ``before`` (what the changelog holds) to ``after``."""
    if after is None:
        if before is not None:
            yield "", None
            yield from _queues(before, None)
            yield from ((released_part(key), None) for key in before.released)
        return
    if before is None or head(before) != head(after):
        yield "", head(after)
    yield from _queues(before, after)
    yield from _released(before, after)


def _queues(before: DispatchState | None, after: DispatchState | None) -> Parts:
    old_queues = before.queues if before is not None else {}
    new_queues = after.queues if after is not None else {}
    for key in old_queues.keys() | new_queues.keys():
        old, new = old_queues.get(key, ()), new_queues.get(key, ())
        if old is new:
            continue
        removed, added = _queue_diff(old, new)
        yield from ((queued_part(offer.seq), None) for offer in removed)
        if added:
            system = after.system if after is not None else ""
            tenant, priority = split_key(key)
            yield from ((queued_part(offer.seq), DispatchQueuedPart(system, tenant, priority, offer))
                        for offer in added)


def _queue_diff(old: tuple[QueuedOffer, ...], new: tuple[QueuedOffer, ...]
                ) -> tuple[tuple[QueuedOffer, ...], tuple[QueuedOffer, ...]]:
    """(removed, added). A queue is in ``seq`` order; most changes take from its head and
    append to its tail, which costs a bisect and one C-level comparison here."""
    last = old[-1].seq if old else -1
    cut = len(new)
    while cut > 0 and new[cut - 1].seq > last:
        cut -= 1
    kept, added = new[:cut], new[cut:]
    start = bisect_left(old, kept[0].seq, key=lambda offer: offer.seq) if kept else len(old)
    if old[start:] == kept:
        return old[:start], added
    seqs = {offer.seq for offer in new}  # something left from the middle (a dropped run)
    old_seqs = {offer.seq for offer in old}
    return (tuple(offer for offer in old if offer.seq not in seqs),
            tuple(offer for offer in new if offer.seq not in old_seqs))


def _released(before: DispatchState | None, after: DispatchState) -> Parts:
    old = before.released if before is not None else {}
    new = after.released
    if old is new:
        return
    for key in old.keys() | new.keys():
        item = new.get(key)
        if item is None:
            yield released_part(key), None
        elif old.get(key) != item:
            yield released_part(key), DispatchReleasedPart(after.system, item)


def joined(parts: dict[str, Any]) -> DispatchState | None:
    """The state a system's stored records stand for (None: no head, nothing kept)."""
    top = parts.get("")
    if not isinstance(top, DispatchState):
        return None
    queued: dict[str, list[QueuedOffer]] = {}
    released: dict[str, ReleasedOffer] = {}
    for name, part in parts.items():
        if isinstance(part, DispatchQueuedPart):
            queued.setdefault(queue_key(part.tenant, part.priority), []).append(part.offer)
        elif isinstance(part, DispatchReleasedPart):
            released[name.removeprefix("r/")] = part.offer
    queues = dict(top.queues)  # a head written before the split holds its queues itself
    for key, offers in queued.items():
        queues[key] = (*queues.get(key, ()), *sorted(offers, key=lambda offer: offer.seq))
    return replace(top, queues=queues, released={**top.released, **released})
