"""``taskplane verify --processor dispatcher``: the dispatcher's log (``dispatch`` and
``dispatch-events``) re-decided with this version's decider, as the orchestrator's is
(``processors/orchestrator/verify.py``, ``contract/replay.py``). The dispatcher takes no
recorded inputs: a decision is a function of the state, the command and its log time,
and a ``DispatchTick`` (on ``dispatch`` too) wakes the systems whose released offers
expired by then, as the runtime does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.processors.orchestrator.verify import (
    RecordedLog,
    Verdict,
    partitioned,
    read_cluster,
    replay_partitions,
)
from taskplane.streams.topics import Topics

ROLES = ("dispatch", "dispatch-events")


def read_dispatch(kafka_config: dict[str, Any], topics: Topics) -> RecordedLog:
    return read_cluster(kafka_config, topics, ROLES)


def verify_dispatch(log: RecordedLog, system: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Verdict:
    """Re-decide ``log`` (recorded as commands and events); ``system``: that key only."""
    by_partition, undecodable = partitioned(log)
    wanted = None if system is None else (lambda key: key == system)
    return replay_partitions(DispatchDecider(), by_partition, undecodable, wanted, progress)
