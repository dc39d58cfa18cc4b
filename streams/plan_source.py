"""The orchestrator's and projector's plan lookup: the ``systems`` topic's pinned
versions (key ``name@version``), read as a global table. Started (and read to its
end) before the first record is processed, so what a restored run references is there."""

from __future__ import annotations

from typing import Any

from taskplane.contract.plan import SystemDefinition, SystemPlan
from taskplane.contract.plans import pinned_key
from taskplane.streams.exceptions import StreamsError
from taskplane.streams.table import GlobalTable


class SystemsPlans:
    """``(name, version) -> SystemPlan | None``, a ``PlanBook`` lookup."""

    def __init__(self, kafka_config: dict[str, Any], topic: str, catch_up_s: float = 60.0) -> None:
        self._kafka = kafka_config
        self._topic = topic
        self._catch_up_s = catch_up_s
        self._table: GlobalTable | None = None

    def start(self) -> None:
        if self._table is None:
            self._table = GlobalTable(self._kafka, self._topic)
            self._table.wait_until_caught_up(self._catch_up_s)

    def close(self) -> None:
        if self._table is not None:
            self._table.close()
            self._table = None

    def wait(self, name: str, version: str, timeout_s: float) -> SystemPlan | None:
        """As a lookup, waiting up to ``timeout_s`` for the record (a reader that saw an
        event may be ahead of the table, though the pin committed with it)."""
        table = self._table
        definition = None if table is None else table.wait_for(pinned_key(name, version), timeout_s)
        return definition.plan if isinstance(definition, SystemDefinition) else None

    def resolve(self, reference: SystemPlan) -> SystemPlan:
        """The plan a ``RunSubmitted`` references; StreamsError when the ``systems``
        topic does not have it (the orchestrator pins every version it accepts)."""
        plan = self.wait(reference.name, reference.version, self._catch_up_s)
        if plan is None:
            raise StreamsError(f"{self._topic} has no {pinned_key(reference.name, reference.version)}: "
                               "cannot show the run's tasks")
        return plan

    def __call__(self, name: str, version: str) -> SystemPlan | None:
        table = self._table
        if table is None:
            return None
        definition = table.get(pinned_key(name, version))
        return definition.plan if isinstance(definition, SystemDefinition) else None
