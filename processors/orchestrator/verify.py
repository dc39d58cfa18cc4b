"""``taskplane verify`` of the orchestrator's log: ``commands`` re-decided against
``events`` by the decider production wires (``app.py``), through the shared
machinery (``processors/recorded.py``: fixtures and cluster reads, ``processors/verifying.py``).
Its changelog is not compared here: ``taskplane rebuild state`` does that (retention
retires runs from it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taskplane.contract.messages import SubmitRun
from taskplane.contract.plans import PlanBook
from taskplane.processors.orchestrator.app import OrchestratorSettings, orchestrator_decider
from taskplane.processors.recorded import (  # re-exported: the names the tests and scripts import
    FORMAT,
    ROLES,
    BadLog,
    Partitions,
    RawRecord,
    RecordedLog,
    Verdict,
    current_schemas,
    partitioned,
    read_cluster,
    read_fixture,
    read_fixtures,
    replay_partitions,
    serde_for,
    write_fixture,
)
from taskplane.processors.verifying import Verifiable, verify_processor
from taskplane.streams.serde import Serde

__all__ = ["FORMAT", "ROLES", "VERIFIABLE", "BadLog", "Partitions", "RawRecord", "RecordedLog", "Verdict",
           "current_schemas", "partitioned", "read_cluster", "read_fixture", "read_fixtures", "replay_partitions",
           "verify_log", "write_fixture"]


def _runs_of(by_partition: Partitions, system: str) -> Callable[[str], bool]:
    """A run is keyed by its id: the system's runs are those its submits name."""
    runs = {c.key for commands, _ in by_partition.values() for c in commands
            if isinstance(c.command, SubmitRun) and c.command.plan.name == system}
    return runs.__contains__


def _decider(orchestrator: OrchestratorSettings | None = None) -> Any:
    return orchestrator_decider(PlanBook(), orchestrator or OrchestratorSettings())


VERIFIABLE = Verifiable("orchestrator", ROLES, "run", _decider, _runs_of)


def verify_log(log: RecordedLog, orchestrator: OrchestratorSettings | None = None, system: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Verdict:
    """Re-decide ``log`` with the production decider (its retention from ``orchestrator``);
    ``system`` limits it to that system's runs; ``progress(done, total)`` now and then."""
    spec = VERIFIABLE if orchestrator is None else Verifiable(
        "orchestrator", ROLES, "run", lambda: _decider(orchestrator), _runs_of)
    return verify_processor(spec, log, system, progress)


def _serde(recorded: Mapping[str, Any]) -> Serde:
    """A serde for a fixture's writer schemas (tests/contract/test_status_conformance.py)."""
    return serde_for(RecordedLog([], dict(recorded)))
