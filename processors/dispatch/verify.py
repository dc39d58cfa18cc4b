"""``taskplane verify --processor dispatcher``: the dispatcher's log (``dispatch`` and
``dispatch-events``) re-decided with this version's decider, and its changelog (a head
and a record per offer, ``parts.py``) compared with the fold of the events
(``processors/verifying.py``). The dispatcher takes no recorded inputs: a decision is a
function of the state, the command and its log time, and a ``DispatchTick`` (on
``dispatch`` too) wakes the systems whose released offers expired by then, as the
runtime does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.processors.recorded import RecordedLog, Verdict, read_cluster
from taskplane.processors.verifying import Verifiable, by_key, verify_processor
from taskplane.streams.topics import Topics

ROLES = ("dispatch", "dispatch-events", "dispatcher-changelog")
VERIFIABLE = Verifiable("dispatcher", ROLES, "system", DispatchDecider, by_key)


def read_dispatch(kafka_config: dict[str, Any], topics: Topics) -> RecordedLog:
    return read_cluster(kafka_config, topics, ROLES)


def verify_dispatch(log: RecordedLog, system: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Verdict:
    """Re-decide ``log`` (recorded as commands, events and changelog); ``system``: that key only."""
    return verify_processor(VERIFIABLE, log, system, progress)
