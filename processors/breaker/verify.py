"""``taskplane verify --processor breaker``: ``tool-outcomes`` (outcomes, permit
requests and the governor's Ticks) re-decided against ``breaker-events`` by this
version's breaker decider (breakers and the tool governor's permits, ``permits.py``),
and the ``breakers`` changelog compared with the fold of the events
(``processors/verifying.py``). The decider takes no recorded input: a grant is a
function of the state, the request and its log time (the token bucket refills by log
time), so the same log grants the same permits at the same log times.

``breakers`` is also the table workers read (the breaker without its permit queue,
written as an output before the changelog record in the same transaction): the last
record of a tool is the changelog's, the full state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskplane.processors.breaker.decider import BreakerDecider
from taskplane.processors.recorded import RecordedLog, Verdict, read_cluster
from taskplane.processors.verifying import Verifiable, verify_processor
from taskplane.streams.topics import Topics

ROLES = ("tool-outcomes", "breaker-events", "breakers")
VERIFIABLE = Verifiable("breaker", ROLES, "tool", BreakerDecider)


def read_breaker(kafka_config: dict[str, Any], topics: Topics) -> RecordedLog:
    return read_cluster(kafka_config, topics, ROLES)


def verify_breaker(log: RecordedLog, progress: Callable[[int, int], None] | None = None) -> Verdict:
    return verify_processor(VERIFIABLE, log, None, progress)
