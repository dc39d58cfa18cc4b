"""Scheduling: a system's fair-share policy and the dispatcher's messages (issue 27).

The policy compiles from the manifest's ``spec.scheduling`` into ``SystemPlan.scheduling``.
A run that has a tenant or a priority, or whose plan has a policy, is *dispatched*: the
orchestrator offers its ready tasks to the dispatcher (``DispatchOffer`` on ``dispatch``,
keyed by system) instead of writing a ``WorkItem``; the dispatcher decides which offer goes
to ``work`` next and learns from ``DispatchNotice`` records when one was taken (leased),
finished, or dropped with its run. See ``docs/scheduling.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PRIORITY_MIN = 1
PRIORITY_MAX = 5
PRIORITY_DEFAULT = 3  # what a dispatched run without a priority counts as
DEFAULT_TENANT = "default"  # what a dispatched run without a tenant counts as


_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def valid_priority(priority: int) -> bool:
    """1..5, or 0 for "not given"."""
    return priority == 0 or PRIORITY_MIN <= priority <= PRIORITY_MAX


def tenant_problem(tenant: object, *, given: bool = False) -> str | None:
    """Why ``tenant`` is not a tenant name ("" is none), or None. A tenant a user
    ``given`` is never "": ``--tenant "$UNSET"`` is refused, not a run without one."""
    if isinstance(tenant, str) and ((tenant == "" and not given) or _TENANT.fullmatch(tenant)):
        return None
    return f"{tenant!r} is not a tenant name (letters, digits, '.', '_', '-'; at most 63)"


def priority_problem(priority: object) -> str | None:
    """Why ``priority`` is not one a user may give (1..5), or None."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        return f"{priority!r} is not a priority ({PRIORITY_MIN}..{PRIORITY_MAX}, {PRIORITY_MAX} first)"
    return None


@dataclass(frozen=True, slots=True)
class TenantShare:
    name: str
    weight: int = 1
    max_concurrent: int = 0  # 0: no cap


@dataclass(frozen=True, slots=True)
class SchedulingPolicy:
    tenants: tuple[TenantShare, ...] = ()
    default_weight: int = 1
    default_max_concurrent: int = 0
    priority_aging_ms: int = 30_000  # a waiting offer gains one priority level per this much log time
    window: int = 32  # released offers not yet taken, at most (what may wait on `work`)
    release_timeout_ms: int = 60_000  # a released offer never taken stops counting after this

    def share(self, tenant: str) -> tuple[int, int]:
        """(weight, max_concurrent) of ``tenant``."""
        for share in self.tenants:
            if share.name == tenant:
                return share.weight, share.max_concurrent
        return self.default_weight, self.default_max_concurrent


DEFAULT_POLICY = SchedulingPolicy()


# ---------------------------------------------------------------- dispatcher input


@dataclass(frozen=True, slots=True)
class DispatchOffer:
    """A dispatched run's ready task. The tenant's share and the system's window travel
    with each offer (the latest declaration wins), so the dispatcher reads no plan."""

    system: str
    run_id: str
    task: str
    attempt: int
    tenant: str
    priority: int
    weight: int = 1
    max_concurrent: int = 0
    priority_aging_ms: int = 30_000
    window: int = 32
    release_timeout_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class DispatchNotice:
    """What became of an offer: ``taken`` (leased), ``done`` (the attempt ended), or
    ``dropped`` (the run ended; ``task`` is empty: every offer of the run)."""

    system: str
    run_id: str
    task: str
    attempt: int
    kind: str


@dataclass(frozen=True, slots=True)
class DispatchTick:
    now_ms: int


# ---------------------------------------------------------------- dispatcher events


@dataclass(frozen=True, slots=True)
class OfferQueued:
    system: str
    run_id: str
    task: str
    attempt: int
    tenant: str
    priority: int
    at_ms: int
    weight: int = 1
    max_concurrent: int = 0
    priority_aging_ms: int = 30_000
    window: int = 32
    release_timeout_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class WorkReleased:
    """The offer goes to ``work`` now. ``credit`` is the tenant's deficit after this
    release and ``cursor`` the tenant the round robin stands on (both recorded so the
    fold needs no replay of the choice)."""

    system: str
    run_id: str
    task: str
    attempt: int
    tenant: str
    priority: int
    at_ms: int
    cursor: str
    credit: int


@dataclass(frozen=True, slots=True)
class DispatchNoted:
    """A notice applied: ``taken``, ``done``, ``dropped``, or ``expired`` (a released
    offer not taken within the release timeout stops counting against the window)."""

    system: str
    run_id: str
    task: str
    attempt: int
    kind: str


@dataclass(frozen=True, slots=True)
class DispatchRejected:
    system: str
    reason: str


DispatchCommand = DispatchOffer | DispatchNotice | DispatchTick
DispatchEvent = OfferQueued | WorkReleased | DispatchNoted | DispatchRejected


# ---------------------------------------------------------------- dispatcher state


@dataclass(frozen=True, slots=True)
class QueuedOffer:
    run_id: str
    task: str
    attempt: int
    queued_ms: int
    seq: int = 0  # the system's offer number: FIFO order, and the offer's changelog record


@dataclass(frozen=True, slots=True)
class ReleasedOffer:
    run_id: str
    task: str
    attempt: int
    tenant: str
    released_ms: int
    taken: bool = False


@dataclass(frozen=True, slots=True)
class TenantLedger:
    name: str
    weight: int = 1
    max_concurrent: int = 0
    credit: int = 0  # the deficit counter of deficit round robin
    served: int = 0  # offers released, ever (what shares are measured by)
    last_offer_ms: int = 0  # log time of its latest offer: whether it counts as active


@dataclass(frozen=True, slots=True)
class DispatchState:
    """One system's queues. ``queues`` is keyed ``tenant/priority`` (FIFO each);
    ``released`` by ``run_id/task`` (released and not yet done)."""

    system: str
    tenants: dict[str, TenantLedger] = field(default_factory=dict)
    queues: dict[str, tuple[QueuedOffer, ...]] = field(default_factory=dict)
    released: dict[str, ReleasedOffer] = field(default_factory=dict)
    cursor: str = ""
    priority_aging_ms: int = 30_000
    window: int = 32
    release_timeout_ms: int = 60_000
    next_seq: int = 0  # the next queued offer's ``seq``


# ---------------------------------------------------------------- dispatcher changelog
# A system's state is stored as a head (the ``DispatchState`` without queues or released
# offers: the round robin's bookkeeping) and one record per queued or released offer, so
# no record grows with the backlog (``processors/dispatch/parts.py``).


@dataclass(frozen=True, slots=True)
class DispatchQueuedPart:
    system: str
    tenant: str
    priority: int
    offer: QueuedOffer


@dataclass(frozen=True, slots=True)
class DispatchReleasedPart:
    system: str
    offer: ReleasedOffer


def dispatched(tenant: str, priority: int, scheduled: bool) -> bool:
    """Whether a run goes through the dispatcher (docs/scheduling.md): it has a tenant
    or a priority, or its plan has ``spec.scheduling`` (``scheduled``). The orchestrator
    decides by it; the client's wait names the dispatcher by it."""
    return bool(tenant) or priority != 0 or scheduled
