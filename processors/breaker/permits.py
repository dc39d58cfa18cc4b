"""The tool governor's permits, decided in the breaker's decider (keyed by tool).

Rate: a token bucket refilled by log time (``at_ms`` of the command or Tick, never a
clock), in exact integers: one call is ``rate_period_ms`` units and every millisecond
adds ``rate_limit`` units. The bucket holds ``burst`` calls (2 % of the limit, at least
2), so a window of one period holds at most ``rate_limit + burst - 1`` grants, while a
grant delayed by a Tick's round trip is not lost to the bucket's cap.
Concurrency: at most ``concurrency`` holders; a holder is released by its call's
``ToolOutcome`` or, when it died, ``hold_ms`` plus a grace after its grant.
Requests are served first come, first served; an open breaker grants nothing and denies
whoever waits, so the worker's breaker handling applies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, assert_never

from taskplane.contract.breaker import BreakerState, BreakerStatus
from taskplane.contract.permits import (
    AcquirePermit,
    PermitDenied,
    PermitEvent,
    PermitGranted,
    PermitHolder,
    PermitLimitsSet,
    PermitQueued,
    PermitReleased,
    PermitRequest,
)
from taskplane.contract.records import replace

# A holder that never reports (its worker died) keeps its permit this long past the
# tool's timeout: a live holder's outcome travels worker → orchestrator → governor,
# and releasing before it arrives would let one call too many run at once.
HOLD_GRACE_MS = 10_000

Held = TypeVar("Held", PermitHolder, PermitRequest)


def burst(state: BreakerState) -> int:
    return max(2, state.rate_limit // 50)


def window_bound(rate_limit: int) -> int:
    """The most grants any window of one rate period holds."""
    return rate_limit + max(2, rate_limit // 50) - 1


def tokens_at(state: BreakerState, at_ms: int) -> int:
    if state.rate_limit <= 0:
        return 0
    elapsed = max(0, at_ms - state.refilled_ms)
    return min(burst(state) * state.rate_period_ms, state.tokens + elapsed * state.rate_limit)


def can_grant(state: BreakerState, at_ms: int) -> bool:
    if state.status is BreakerStatus.OPEN:
        return False
    if state.concurrency > 0 and len(state.holders) >= state.concurrency:
        return False
    return state.rate_limit <= 0 or tokens_at(state, at_ms) >= state.rate_period_ms


def next_deadline(state: BreakerState) -> int | None:
    """When a Tick may change something: a holder's expiry, or the next token while
    requests wait and concurrency leaves room."""
    times = [h.expires_ms for h in state.holders]
    room = state.concurrency <= 0 or len(state.holders) < state.concurrency
    if state.waiting and room and state.rate_limit > 0 and state.status is not BreakerStatus.OPEN:
        missing = state.rate_period_ms - state.tokens
        times.append(state.refilled_ms + max(0, -(-missing // state.rate_limit)))
    return min(times) if times else None


# ------------------------------------------------------------------ decide


def acquire(state: BreakerState, command: AcquirePermit, at_ms: int) -> list[PermitEvent]:
    events: list[PermitEvent] = []
    limits = (command.rate_limit, command.rate_period_ms, command.concurrency, command.hold_ms)
    if limits != (state.rate_limit, state.rate_period_ms, state.concurrency, state.hold_ms):
        changed = PermitLimitsSet(state.tool, *limits, at_ms)
        events.append(changed)
        state = evolve(state, changed)
    now = max(at_ms, state.refilled_ms)
    request = PermitRequest(command.key, command.try_no, command.worker_id, command.run_id, command.task,
                            command.epoch, now)
    if state.status is BreakerStatus.OPEN:
        return [*events, _denied(state, request, "breaker open", now)]
    holder = _find(state.holders, command.key, command.try_no)
    if holder is not None:  # a resend, or the call's next attempt after its holder died
        if command.epoch < holder.epoch:
            return [*events, _denied(state, request, "a newer attempt holds this call", now)]
        return [*events, _granted(state, request, now, new=False)]
    queued = _find(state.waiting, command.key, command.try_no)
    if queued is not None:
        if (command.worker_id, command.epoch) == (queued.worker_id, queued.epoch):
            return events  # a resend while it waits
        if command.epoch < queued.epoch:
            return [*events, _denied(state, request, "a newer attempt holds this call", now)]
        # The call's next attempt takes the place in line; the attempt it replaces is told,
        # so it stops waiting (its lease is gone).
        taken = PermitQueued(state.tool, replace(request, requested_ms=queued.requested_ms))
        return [*events, taken, _denied(state, queued, "a newer attempt holds this call", now)]
    if not state.waiting and can_grant(state, now):
        return [*events, _granted(state, request, now, new=True)]
    # Queued behind the others, and whoever is first is served if a token came due since
    # the last decision: every command is a decision point, not only the Ticks.
    queued_event = PermitQueued(state.tool, request)
    return [*events, queued_event, *serve(evolve(state, queued_event), now)]


def release(state: BreakerState, key: str | None) -> list[PermitEvent]:
    """The call's outcome frees its oldest permit (a tool's own retry asks for another)."""
    if key is None:
        return []
    held = sorted((h for h in state.holders if h.key == key), key=lambda h: (h.try_no, h.granted_ms))
    return [PermitReleased(state.tool, held[0].key, held[0].try_no, "outcome")] if held else []


def expire(state: BreakerState, now_ms: int) -> list[PermitEvent]:
    return [PermitReleased(state.tool, h.key, h.try_no, "expired") for h in state.holders if h.expires_ms <= now_ms]


def serve(state: BreakerState, at_ms: int) -> list[PermitEvent]:
    """Grant waiting requests, in order, while the limits allow; deny them all while the
    breaker is open."""
    if state.status is BreakerStatus.OPEN:
        return [_denied(state, request, "breaker open", at_ms) for request in state.waiting]
    events: list[PermitEvent] = []
    now = max(at_ms, state.refilled_ms)
    while state.waiting and can_grant(state, now):
        granted = _granted(state, state.waiting[0], now, new=True)
        events.append(granted)
        state = evolve(state, granted)
    return events


def _granted(state: BreakerState, request: PermitRequest, now: int, *, new: bool) -> PermitGranted:
    return PermitGranted(state.tool, request.key, request.try_no, request.worker_id, request.run_id, request.task,
                         request.epoch, now, now + state.hold_ms + HOLD_GRACE_MS, new)


def _denied(state: BreakerState, request: PermitRequest, reason: str, now: int) -> PermitDenied:
    retry_after = 0
    if state.status is BreakerStatus.OPEN and state.half_open_due_ms is not None:
        retry_after = max(0, state.half_open_due_ms - now)
    return PermitDenied(state.tool, request.key, request.try_no, request.worker_id, request.run_id, request.task,
                        request.epoch, reason, retry_after)


def _find(items: Sequence[Held], key: str, try_no: int) -> Held | None:
    return next((item for item in items if item.key == key and item.try_no == try_no), None)


def _without(items: tuple[Held, ...], key: str, try_no: int) -> tuple[Held, ...]:
    return tuple(item for item in items if item.key != key or item.try_no != try_no)


# ------------------------------------------------------------------ evolve


def evolve(state: BreakerState, event: PermitEvent) -> BreakerState:
    match event:
        case PermitLimitsSet(rate_limit=rate, rate_period_ms=period, concurrency=cap, hold_ms=hold, at_ms=at):
            now = max(at, state.refilled_ms)
            if rate <= 0 or period <= 0:
                tokens = 0
            elif state.rate_limit <= 0 or state.rate_period_ms <= 0:
                tokens = max(2, rate // 50) * period  # a new limit starts with a full bucket
            else:  # the same fraction of a call, in the new period's units, capped by the new bucket
                tokens = min(max(2, rate // 50) * period, tokens_at(state, now) * period // state.rate_period_ms)
            return replace(state, rate_limit=rate, rate_period_ms=period, concurrency=cap, hold_ms=hold,
                           tokens=tokens, refilled_ms=now)
        case PermitQueued(request=request):
            kept = _without(state.waiting, request.key, request.try_no)
            if len(kept) == len(state.waiting):
                return replace(state, waiting=(*kept, request))
            waiting = tuple(request if (w.key, w.try_no) == (request.key, request.try_no) else w
                            for w in state.waiting)  # a takeover keeps its place in line
            return replace(state, waiting=waiting)
        case PermitGranted():
            holder = PermitHolder(event.key, event.try_no, event.worker_id, event.run_id, event.task, event.epoch,
                                  event.granted_ms, event.expires_ms)
            tokens, refilled = state.tokens, state.refilled_ms
            if event.token and state.rate_limit > 0:
                refilled = max(event.granted_ms, state.refilled_ms)
                tokens = tokens_at(state, refilled) - state.rate_period_ms
            return replace(state, tokens=tokens, refilled_ms=refilled,
                           holders=(*_without(state.holders, event.key, event.try_no), holder),
                           waiting=_without(state.waiting, event.key, event.try_no),
                           permits_granted=state.permits_granted + (1 if event.token else 0))
        case PermitDenied():  # only the request it answers (a takeover's new one stays in line)
            waiting = tuple(w for w in state.waiting if (w.key, w.try_no, w.worker_id, w.epoch)
                            != (event.key, event.try_no, event.worker_id, event.epoch))
            return replace(state, waiting=waiting)
        case PermitReleased():
            return replace(state, holders=_without(state.holders, event.key, event.try_no))
        case _:
            assert_never(event)
