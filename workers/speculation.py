"""Speculative follow-ons: a worker runs the downstream tasks its completion readies
without waiting for the orchestrator's grant (docs/workers.md, "Speculative follow-ons").

The orchestrator's rule (``decider._complete``): a completion accepted from the task's
holder readies every PENDING child whose dependencies all succeeded, and grants the
first ``follow_on`` of them, in ``plan.downstream`` order, to the completer as
attempt 1, epoch 1 (a child that was never ready was never leased). So when this
worker offers at least as many slots as the task has children, and itself knows every
dependency of a child succeeded (it completed them, or they came with a grant's
dependency outputs), that child's grant is already decided: it is this worker's, with
a known attempt and epoch. The worker starts it at once and sends its outcome when it
ends; the orchestrator's grant, arriving later, finds it running and is not started
twice.

The order matters: the decision and the write of the completion happen under one lock,
so the orchestrator sees this worker's completions of a run in the order they were
decided on (one producer, one partition per run).

What it does not change: every transition is still decided by the orchestrator from
the log. A completion it refuses (this worker's lease on the task had expired) grants
nothing, and the children started here are refused in turn when they report; as with
any attempt past its lease, a child may then run once more elsewhere (tool calls keep
their idempotency keys). Runs with a policy (budgets wait on the orchestrator's usage
answers) and runs of another version of the plan are never run ahead.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from taskplane.contract.messages import Assignment, CompleteTask
from taskplane.contract.plan import SystemPlan

D = TypeVar("D")

_RUNS = 1_000  # runs whose succeeded outputs are remembered (the least recent go first)
_STARTED = 10_000  # started children awaiting their grant (a refused parent's never comes)


class Speculation:
    def __init__(self, plan: SystemPlan, now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._plan = plan
        self._now_ms = now_ms
        self._lock = threading.Lock()
        self._succeeded: OrderedDict[str, dict[str, str]] = OrderedDict()  # run -> task -> output
        self._started: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self.started = 0  # children started ahead of their grant (for metrics and tests)

    def report(self, completion: CompleteTask, assignment: Assignment,
               produce: Callable[[CompleteTask], D]) -> tuple[D, list[Assignment]]:
        """Write ``completion`` (of ``assignment``'s task) with ``produce``; returns what
        ``produce`` returned and the children to start now, their grants decided by it."""
        with self._lock:
            children = self._children(completion, assignment)
            if children:  # their grants need no Assignment: this worker runs them already
                completion = replace(completion, started_ahead=tuple(child.task for child in children))
            written = produce(completion)  # under the lock: decision order is log order
            for child in children:
                self._started[(child.run_id, child.task, child.epoch)] = None
                if len(self._started) > _STARTED:
                    self._started.popitem(last=False)
            self.started += len(children)
            return written, children

    def granted(self, assignment: Assignment) -> bool:
        """Whether the orchestrator's grant is for a child already started here. The
        completion names the children it started (``CompleteTask.started_ahead``) and the
        orchestrator then sends no Assignment for them; one that does not know the field
        (an older version, mid-upgrade) still does, and it is matched here."""
        key = (assignment.run_id, assignment.task, assignment.epoch)
        with self._lock:
            if key not in self._started:
                return False
            del self._started[key]
            return True

    def _children(self, completion: CompleteTask, assignment: Assignment) -> list[Assignment]:
        plan = self._plan
        if assignment.policy is not None or not assignment.plan_version or assignment.plan_version != plan.version:
            return []
        try:
            downstream = plan.downstream(completion.task)
        except KeyError:
            return []
        succeeded = self._succeeded.pop(completion.run_id, None) or {}
        succeeded.update(assignment.dependency_outputs)
        succeeded[completion.task] = completion.output
        self._succeeded[completion.run_id] = succeeded
        if len(self._succeeded) > _RUNS:
            self._succeeded.popitem(last=False)
        # Fewer slots offered than children: the orchestrator grants the first ready
        # ones, which may include a child whose readiness this worker cannot see.
        if not downstream or completion.follow_on < len(downstream):
            return []
        children = []
        expires = self._now_ms() + assignment.lease_timeout_ms
        for name in downstream:
            agent = plan.agent(name)
            if not all(dep in succeeded for dep in agent.dependencies):
                continue  # not ready, or ready by a completion this worker did not see
            children.append(Assignment(
                assignment.worker_id, completion.run_id, name, 1, True, None, 1, expires,
                assignment.lease_timeout_ms, assignment.system, agent.model, assignment.input,
                {dep: succeeded[dep] for dep in agent.dependencies}, (), agent.tools,
                plan_version=assignment.plan_version))
        return children
