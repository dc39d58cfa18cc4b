"""Plans held once and referenced by name and version.

A run's state, its ``RunSubmitted`` event and its changelog snapshot name the plan
(``reference``: the system's name and version with no agents); the body is held once
per process in a ``PlanBook``. A version is the hash of the manifest it was compiled
from, so ``(name, version)`` names one plan forever: a lookup gives the same plan on a
replay as it did live. The book learns a plan from the ``SubmitRun`` that carries it,
from records written before plans were referenced (they carry the body), and from
``lookup`` (the wiring passes the ``systems`` table, key ``name@version``).
"""

from __future__ import annotations

from collections.abc import Callable

from taskplane.contract.errors import TaskplaneError
from taskplane.contract.plan import ExecutionPolicy, SystemPlan

Lookup = Callable[[str, str], SystemPlan | None]


def pinned_key(name: str, version: str) -> str:
    """The ``systems`` topic key that holds one version of a system for good."""
    return f"{name}@{version}"


def reference(plan: SystemPlan) -> SystemPlan:
    """``plan`` without its body: what events and snapshots carry."""
    return SystemPlan(plan.name, plan.version, (), ExecutionPolicy())


class PlanConflict(TaskplaneError):
    """A plan whose name and version are known with another body. Not retryable."""


class PlanBook:
    """``(name, version) -> SystemPlan``; an entry, once added, never changes."""

    __slots__ = ("_plans", "_references", "_lookup")

    def __init__(self, lookup: Lookup | None = None) -> None:
        self._plans: dict[tuple[str, str], SystemPlan] = {}
        self._references: dict[tuple[str, str], SystemPlan] = {}
        self._lookup = lookup

    def __len__(self) -> int:
        return len(self._plans)

    def get(self, name: str, version: str) -> SystemPlan | None:
        plan = self._plans.get((name, version))
        if plan is None and self._lookup is not None:
            found = self._lookup(name, version)
            if found is not None and found.agents:
                plan = self._plans.setdefault((name, version), found)
        return plan

    def add(self, plan: SystemPlan) -> SystemPlan:
        """The held instance for ``plan`` (added if new); PlanConflict if the same
        name and version are held with a different body."""
        held = self.get(plan.name, plan.version)
        if held is None:
            held = self._plans[(plan.name, plan.version)] = plan
        elif held is not plan and held != plan:
            raise PlanConflict(f"system {plan.name!r} version {plan.version!r} is known with another body")
        return held

    def resolve(self, plan: SystemPlan) -> SystemPlan | None:
        """The full plan for ``plan``: a body is held (and returned shared), a reference
        is looked up; None for a reference the book cannot resolve."""
        if plan.agents:
            return self.add(plan)
        return self.get(plan.name, plan.version)

    def reference(self, plan: SystemPlan) -> SystemPlan:
        """``reference(plan)``, one shared instance per version."""
        key = (plan.name, plan.version)
        ref = self._references.get(key)
        if ref is None:
            ref = self._references[key] = reference(plan)
        return ref

    def needs_pin(self, name: str, version: str) -> bool:
        """True when ``lookup`` does not know this version: the caller then writes it
        where ``lookup`` will find it, so a restart resolves what it references (the
        orchestrator's hints do, once per partition and batch). Without a ``lookup``
        (in-process runs) there is nowhere to write it: always False."""
        return self._lookup is not None and self._lookup(name, version) is None
