"""Which queued offer goes to ``work`` next: deficit round robin across tenants, then
priority with aging within the chosen tenant. Pure functions of the state and log time.

Every offer costs one unit, so a tenant's quantum is its weight: the round robin stands
on one tenant (``cursor``) and releases from it while its credit lasts; a tenant it
moves to gets ``weight`` credit. A tenant with nothing queued, or at its concurrency
cap, is passed over (an empty one loses its credit). Over any stretch in which tenants
stay backlogged, each is served in proportion to its weight, and a tenant that has an
offer waits at most one quantum of each other tenant before it is served.
"""

from __future__ import annotations

from typing import NamedTuple

from taskplane.contract.scheduling import DispatchState, QueuedOffer


class Choice(NamedTuple):
    tenant: str
    priority: int
    offer: QueuedOffer
    cursor: str
    credit: int  # the tenant's credit after this release


def queue_key(tenant: str, priority: int) -> str:
    return f"{tenant}/{priority}"


def split_key(key: str) -> tuple[str, int]:
    tenant, _, priority = key.rpartition("/")
    return tenant, int(priority)


def outstanding(state: DispatchState) -> int:
    """Released offers not yet taken: what may be waiting on ``work``."""
    return sum(1 for item in state.released.values() if not item.taken)


def in_flight(state: DispatchState) -> dict[str, int]:
    """Released offers per tenant whose attempt has not ended (taken or not)."""
    counts: dict[str, int] = {}
    for item in state.released.values():
        counts[item.tenant] = counts.get(item.tenant, 0) + 1
    return counts


def eligible(state: DispatchState) -> set[str]:
    """Tenants with something queued and room under their cap."""
    backlogged = {split_key(key)[0] for key, queue in state.queues.items() if queue}
    if not backlogged:
        return backlogged
    counts = in_flight(state)
    found = set()
    for tenant in backlogged:
        ledger = state.tenants.get(tenant)
        cap = ledger.max_concurrent if ledger is not None else 0
        if cap <= 0 or counts.get(tenant, 0) < cap:
            found.add(tenant)
    return found


def head(state: DispatchState, tenant: str, at_ms: int) -> tuple[int, QueuedOffer] | None:
    """The tenant's offer to serve: the queue head of highest priority after aging
    (one level per ``priority_aging_ms`` waited); on a tie the one waiting longest."""
    best: tuple[int, int, int, QueuedOffer] | None = None  # (aged priority, -queued_ms, priority, offer)
    aging = state.priority_aging_ms
    for key, queue in state.queues.items():
        if not queue:
            continue
        owner, priority = split_key(key)
        if owner != tenant:
            continue
        offer = queue[0]
        aged = priority + (max(0, at_ms - offer.queued_ms) // aging if aging > 0 else 0)
        rank = (aged, -offer.queued_ms, priority, offer)
        if best is None or rank[:3] > best[:3]:
            best = rank
    return None if best is None else (best[2], best[3])


def choose(state: DispatchState, at_ms: int) -> Choice | None:
    """The next release, or None when the window is full or nothing may go."""
    if outstanding(state) >= max(1, state.window):
        return None
    ready = eligible(state)
    if not ready:
        return None
    current = state.cursor
    ledger = state.tenants.get(current)
    if current in ready and ledger is not None and ledger.credit >= 1:
        tenant, credit = current, ledger.credit
    else:
        names = sorted(set(state.tenants) | ready)
        after = [name for name in names if name > current] + [name for name in names if name <= current]
        tenant = next(name for name in after if name in ready)
        found = state.tenants.get(tenant)
        credit = max(1, found.weight if found is not None else 1)
    picked = head(state, tenant, at_ms)
    assert picked is not None  # eligible tenants have a non-empty queue
    priority, offer = picked
    return Choice(tenant, priority, offer, tenant, credit - 1)
