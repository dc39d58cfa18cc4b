"""The shape of a run's events, ids and times aside: what the faithfulness contract
compares between a simulated run and the same run on the real broker.

Per task, the ordered events of that task (type, attempt, epoch, tool, call index,
failure kind); per run, its run-level events in order. Left out: ids and times, payloads
(a real charge id differs from a fake one), lease renewals (their count is a function
of how long a tool took), rejected commands (repeats) and ``TaskReady.offered`` (whether a worker's spare slot or a
claim took the task is timing, and both grant the same lease). Tasks that run in
parallel interleave differently from run to run, so only each task's own order counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_KEPT = ("attempt", "epoch", "tool", "call_index", "kind", "counted", "blocked_by")
# Renewals count how long a tool took; a rejected command is a repeat the broker's timing
# caused (a claim re-sent after its timeout on a busy host), and changes no state.
_SKIPPED = frozenset({"LeaseRenewed", "RunRetired", "RunForgotten", "CommandRejected"})


def shape(events: Iterable[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """One run's events -> {task or "(run)": [(type, fields...), ...]}."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for event in events:
        kind = type(event).__name__
        if kind in _SKIPPED:
            continue
        fields = tuple(_plain(getattr(event, name)) for name in _KEPT if hasattr(event, name))
        task = getattr(event, "task", None)
        found.setdefault(task if isinstance(task, str) else "(run)", []).append((kind, *fields))
    return found


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def differences(simulated: dict[str, list[tuple[Any, ...]]], real: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    """What differs between two shapes, a line per task, for a failure message."""
    return [f"{task}: simulated {simulated.get(task)} / real {real.get(task)}"
            for task in sorted(set(simulated) | set(real)) if simulated.get(task) != real.get(task)]
