"""The ``runs`` index: one ``RunRecord`` per run (compacted, key ``run_id``), written
by the orchestrator in the transaction of the events it summarises, so that a client
finds a run, a finished run's result, and the run an idempotency key stands for, by
its key alone (``docs/client.md``, "How results are read").

Written on the run's submit, its dead letters and replays, its end, and as the answer
to every rejected ``SubmitRun``: a duplicate submit (same idempotency key, so the same
run id) is answered with the run as it stands, and the submitter's client reads that
answer instead of the run's history.
"""

from __future__ import annotations

from taskplane.contract.messages import RunRecord, TaskSummary
from taskplane.contract.state import RunState, TaskStatus


def run_record(state: RunState, with_tasks: bool = True) -> RunRecord:
    """The run as it stands. Task outputs are kept for final tasks only (what a client's
    ``result()`` returns); a retired run's state holds no tasks, and says so."""
    tasks: tuple[TaskSummary, ...] = ()
    if with_tasks and state.tasks:
        plan = state.plan
        summaries = []
        for name, task in state.tasks.items():
            final = not plan.downstream(name)
            output = task.output if final and task.status is TaskStatus.SUCCEEDED else None
            if task.status is TaskStatus.DEAD_LETTERED:
                summaries.append(TaskSummary(name, task.status.value, None, task.last_error, task.attempt))
            else:
                summaries.append(TaskSummary(name, task.status.value, output, blocked_by=task.blocked_by))
        tasks = tuple(summaries)
    return RunRecord(state.run_id, state.plan.name, state.plan.version, state.status.value, state.idempotency_key,
                     state.reason, state.submitted_ms, state.finished_ms, tasks, state.retired_ms is not None,
                     state.tokens, state.cost_micros, state.tenant, state.priority)


def rejected_submit(run_id: str, reason: str) -> RunRecord:
    """The answer to a submit refused for a run that does not exist (an invalid plan)."""
    return RunRecord(run_id, status="rejected", reason=reason)
