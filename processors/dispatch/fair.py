"""Which queued offer goes to ``work`` next: deficit round robin across tenants, then
priority with aging within the chosen tenant. Pure functions of the state and log time.

Every offer costs one unit, so a tenant's quantum is its weight: the round robin stands
on one tenant (``cursor``) and releases from it while its credit lasts; a tenant it
moves to gets ``weight`` credit. A tenant with nothing queued, or at its concurrency
cap, is passed over (an empty one loses its credit). Over any stretch in which tenants
stay backlogged, each is served in proportion to its weight, and a tenant that has an
offer waits at most one quantum of each other tenant before it is served.

The window (released offers not yet taken: what waits on ``work``, in FIFO order) keeps
room for the *active* tenants that have nothing queued now (an offer within
``ACTIVE_MS`` of log time, or an offer released): their weight's share of it, less what
they have on ``work``. A flood alone has the whole window; while another tenant trickles
runs in, the flood holds at most the rest, so the other's next offer is released at once
and finds at most that many of the flood's items ahead of it on ``work`` (a full window
of them was its tail). Tenants that are all backlogged share the window by the round
robin alone. The room kept is at most ``window - 1``: a backlogged tenant always moves.
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


ACTIVE_MS = 10_000  # a tenant's latest offer keeps it active (its share of the window held) this long


def untaken(state: DispatchState) -> dict[str, int]:
    """Released offers not yet taken, per tenant: what may be waiting on ``work``."""
    counts: dict[str, int] = {}
    for item in state.released.values():
        if not item.taken:
            counts[item.tenant] = counts.get(item.tenant, 0) + 1
    return counts


def reserved(state: DispatchState, waiting: dict[str, int], at_ms: int) -> int:
    """Window room kept for active tenants with nothing queued: each one's share of the
    window by weight among the active tenants (rounded up), less its items on ``work``."""
    backlogged = {key.rpartition("/")[0] for key, queue in state.queues.items() if queue}
    busy = backlogged | {item.tenant for item in state.released.values()}
    active = {name: max(1, ledger.weight) for name, ledger in state.tenants.items()
              if name in busy or ledger.last_offer_ms + ACTIVE_MS > at_ms}
    if len(active) < 2:
        return 0
    window, total = max(1, state.window), sum(active.values())
    kept = sum(max(0, -(-window * weight // total) - waiting.get(name, 0))
               for name, weight in active.items() if name not in backlogged)
    return min(window - 1, kept)


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
    waiting = untaken(state)
    if sum(waiting.values()) + reserved(state, waiting, at_ms) >= max(1, state.window):
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
