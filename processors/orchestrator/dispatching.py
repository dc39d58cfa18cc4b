"""The orchestrator's side of fair scheduling (docs/scheduling.md): which runs are
dispatched, and the records it writes for the dispatcher on ``dispatch`` (keyed by
system) instead of a ``WorkItem`` on ``work``.

A run is dispatched when it has a tenant or a priority, or its plan has
``spec.scheduling``; any other run keeps the direct path (work items, root grants).
"""

from __future__ import annotations

from taskplane.contract import scheduling
from taskplane.contract.decider import Output
from taskplane.contract.messages import (
    ApprovalRequested,
    AttemptFailed,
    Event,
    LeaseGranted,
    LeaseReleased,
    RunCancelled,
    RunFailed,
    TaskReady,
    TaskSucceeded,
)
from taskplane.contract.plan import SystemPlan
from taskplane.contract.scheduling import (
    DEFAULT_POLICY,
    DEFAULT_TENANT,
    DispatchNotice,
    DispatchOffer,
)
from taskplane.contract.state import RunState

_NONE: list[Output] = []


def dispatched(plan: SystemPlan, tenant: str, priority: int) -> bool:
    return scheduling.dispatched(tenant, priority, plan.scheduling is not None)


def dispatch_outputs(state: RunState, event: Event) -> list[Output]:
    """The dispatcher's record for ``event`` of a dispatched run (state after it)."""
    system = state.plan.name
    match event:
        case TaskReady(offered=True):
            policy = state.plan.scheduling or DEFAULT_POLICY
            tenant = state.tenant or DEFAULT_TENANT
            weight, cap = policy.share(tenant)
            return [Output("dispatch", system, DispatchOffer(
                system, event.run_id, event.task, event.attempt, tenant, state.priority, weight, cap,
                policy.priority_aging_ms, policy.window, policy.release_timeout_ms))]
        case LeaseGranted():
            return [Output("dispatch", system, DispatchNotice(system, event.run_id, event.task, event.attempt,
                                                              "taken"))]
        case TaskSucceeded() | AttemptFailed():
            return [Output("dispatch", system, DispatchNotice(system, event.run_id, event.task, event.attempt,
                                                              "done"))]
        case LeaseReleased() | ApprovalRequested():  # the slot is given back while it waits
            attempt = state.tasks[event.task].attempt
            return [Output("dispatch", system, DispatchNotice(system, event.run_id, event.task, attempt, "done"))]
        case RunFailed() | RunCancelled():
            return [Output("dispatch", system, DispatchNotice(system, event.run_id, "", 0, "dropped"))]
        case _:
            return _NONE
