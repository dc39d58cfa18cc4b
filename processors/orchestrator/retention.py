"""How long a finished run stays: its whole state for ``finished_run_ms`` after it
finished (so workers' late results, dead-letter replays and duplicate submits meet
it), then a final record (status, finish time, reason, plan reference) until
``final_record_ms``, then nothing. Both steps are events (``RunRetired``,
``RunForgotten``) decided on a ``Tick``, so a replay of the log retires the same runs
at the same points. See ``docs/orchestrator.md`` ("Retention").
"""

from __future__ import annotations

from dataclasses import dataclass

from taskplane.contract.messages import Event, RunForgotten, RunRetired
from taskplane.contract.state import RunState, RunStatus

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class Retention:
    """The processor's defaults; a system's ``spec.execution.finishedRunRetention``
    overrides ``finished_run_ms`` for its runs."""

    finished_run_ms: int = HOUR_MS
    final_record_ms: int = 7 * DAY_MS

    def __post_init__(self) -> None:
        if self.finished_run_ms < 0 or self.final_record_ms < self.finished_run_ms:
            raise ValueError("retention: need 0 <= finished_run_ms <= final_record_ms")


def retire_at(state: RunState | None, retention: Retention) -> int | None:
    """When a finished run's next retirement step is due; None while it runs."""
    if state is None or state.status is RunStatus.RUNNING or state.finished_ms is None:
        return None
    if state.retired_ms is None:
        return state.finished_ms + finished_run_ms(state, retention)
    return state.finished_ms + max(retention.final_record_ms, finished_run_ms(state, retention))


def retirement(state: RunState, now_ms: int, retention: Retention) -> list[Event]:
    """The retirement step a ``Tick`` at ``now_ms`` causes for a finished run."""
    due = retire_at(state, retention)
    if due is None or due > now_ms:
        return []
    if state.retired_ms is None:
        return [RunRetired(state.run_id, now_ms)]
    return [RunForgotten(state.run_id, now_ms)]


def finished_run_ms(state: RunState, retention: Retention) -> int:
    own = state.plan.execution.finished_run_retention_ms
    return retention.finished_run_ms if own is None else own
