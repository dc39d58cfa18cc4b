"""``taskplane verify --processor NAME`` for any processor on the transactional runtime
(docs/verify.md): its recorded input re-decided in log order by the decider this
version wires (``contract/replay.py``: time is each record's log time, recorded inputs
come back from the events), and its changelog compared with the fold of its events
(what a rebuild from the events restores). Each processor's ``verify.py`` declares a
``Verifiable``; ``verifiable(name)`` finds it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskplane.contract.decider import PART_SEP
from taskplane.processors.recorded import (
    BadLog,
    Partitions,
    RecordedLog,
    StateMismatch,
    Verdict,
    changelog_values,
    partitioned,
    replay_partitions,
    serde_for,
)
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.restore import stored_states

# --processor values and the module whose VERIFIABLE each is (imported when asked for).
PROCESSORS = {
    "orchestrator": "taskplane.processors.orchestrator.verify",
    "dispatcher": "taskplane.processors.dispatch.verify",
    "cron": "taskplane.processors.cron.verify",
    "breaker": "taskplane.processors.breaker.verify",
}


@dataclass(frozen=True, slots=True)
class Verifiable:
    """What verifying one processor's log takes."""

    name: str
    roles: tuple[str, ...]  # its input and events topics, and its changelog when the fold is checked
    noun: str  # what a key of its log is ("run", "system", "tool")
    decider: Callable[[], Any]  # as production wires it
    # --system: the keys of that system in the log; None: the log is not keyed by system
    select: Callable[[Partitions, str], Callable[[str], bool]] | None = None


def verifiable(name: str) -> Verifiable:
    if name not in PROCESSORS:
        raise ValueError(f"{name!r} is not one of {', '.join(PROCESSORS)}")
    found: Verifiable = importlib.import_module(PROCESSORS[name]).VERIFIABLE
    return found


def by_key(_partitions: Partitions, system: str) -> Callable[[str], bool]:
    """``--system`` of a log keyed by system."""
    return system.__eq__


def verify_processor(spec: Verifiable, log: RecordedLog, system: str | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Verdict:
    """Re-decide ``log`` and, when it holds the changelog, compare the stored states with
    the fold of the events; ``system`` keeps that system's keys."""
    if system is not None and spec.select is None:
        raise ValueError(f"--system: the {spec.name}'s log is keyed by {spec.noun}, not by system")
    decider = spec.decider()
    by_partition, undecodable = partitioned(log)
    wanted = None if system is None or spec.select is None else spec.select(by_partition, system)
    verdict = replay_partitions(decider, by_partition, undecodable, wanted, progress)
    if log.with_changelog:
        compare_states(decider, log, by_partition, wanted, verdict)
    return verdict


def compare_states(decider: Any, log: RecordedLog, by_partition: Partitions,
                   wanted: Callable[[str], bool] | None, verdict: Verdict) -> None:
    """Per partition, each key's changelog state (joined from its parts for a split state)
    against the fold of its events through ``decider.evolve``. Skipped: keys that changed
    while a live cluster was read, and keys whose history starts before the retained
    input (a fold of part of it is not their state)."""
    serde = serde_for(log)
    stored_values = changelog_values(log)
    moving = {(partition, name.partition(PART_SEP)[0]) for partition, name in log.moving}
    for partition in sorted(by_partition.keys() | stored_values.keys()):
        commands, events = by_partition.get(partition, ([], []))
        try:
            stored = stored_states(decider, serde, stored_values.get(partition, {}))
        except SerdeError as error:
            raise BadLog(f"changelog partition {partition}: a record does not decode: {error}") from None
        folded: dict[str, Any] = {}
        first_cause: dict[str, str] = {}
        for logged in events:
            first_cause.setdefault(logged.key, logged.causation_id)
            state = decider.evolve(folded.get(logged.key), logged.event)
            if state is None:
                folded.pop(logged.key, None)
            else:
                folded[logged.key] = state
        ids = {logged.message_id for logged in commands}
        for key in sorted(stored.keys() | folded.keys()):
            if wanted is not None and not wanted(key):
                continue
            if (partition, key) in moving or key not in first_cause or first_cause[key] not in ids:
                verdict.states_skipped += 1
                continue
            verdict.states_compared += 1
            if stored.get(key) != folded.get(key):
                verdict.state_mismatches.append(StateMismatch(partition, key, stored.get(key), folded.get(key)))
