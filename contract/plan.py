"""The compiled form of an AgentSystem that a run is pinned to.

The manifest (``taskplane.manifest``) compiles to a ``SystemPlan``; ``SubmitRun``
carries it, so a run keeps the policy it was submitted with and a replay of the log
decides the same whatever the ``systems`` topic says later. Events and snapshots carry
only its name and version (``plans.reference``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from taskplane.contract.governance import PolicyPlan
from taskplane.contract.scheduling import SchedulingPolicy


class Isolation(str, Enum):
    NONE = "none"
    PROCESS = "process"
    WASM = "wasm"
    CONTAINER = "container"


@dataclass(frozen=True, slots=True)
class ToolPlan:
    name: str
    timeout_ms: int
    retries: int
    isolation: Isolation
    failure_threshold: int
    cooldown_ms: int
    fallback: str | None = None
    network: bool = False  # the operator's grant (manifest tools[].network); container isolation only
    # Governance (docs/governance.md, "Approvals"): a call waits for a person's grant first.
    approval_required: bool = False
    approval_ttl_ms: int = 600_000  # how long a request waits before it expires (approval_timeout)
    operation: str = ""  # read | write | delete | admin ("" when the manifest does not say)
    # Fleet-wide limits (manifest tools[].rateLimit/concurrency), decided by the tool governor; 0 = none.
    rate_limit: int = 0  # calls per rate_period_ms
    rate_period_ms: int = 0
    concurrency: int = 0

    @property
    def limited(self) -> bool:
        return self.rate_limit > 0 or self.concurrency > 0


@dataclass(frozen=True, slots=True)
class AgentPlan:
    name: str
    model: str | None
    tools: tuple[ToolPlan, ...]
    dependencies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    lease_timeout_ms: int = 10_000
    max_retries: int = 3
    initial_backoff_ms: int = 1_000
    backoff_multiplier: float = 2.0
    max_backoff_ms: int = 60_000
    jitter_fraction: float = 0.1
    dead_letter_transition: bool = True
    idempotency_tracking: bool = True
    finished_run_retention_ms: int | None = None  # None: the processor's default


@dataclass(frozen=True, slots=True)
class SystemPlan:
    name: str
    version: str
    agents: tuple[AgentPlan, ...]
    execution: ExecutionPolicy
    policy: PolicyPlan | None = None  # governance (contract/governance.py); None: none
    scheduling: SchedulingPolicy | None = None  # spec.scheduling; None: runs without a tenant go straight to work

    def agent(self, name: str) -> AgentPlan:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)

    def downstream(self, name: str) -> tuple[str, ...]:
        """Agents that depend on ``name`` directly."""
        return tuple(a.name for a in self.agents if name in a.dependencies)


@dataclass(frozen=True, slots=True)
class SystemDefinition:
    """A record of the compacted ``systems`` topic (key: system name): the plan that
    new runs of the system are submitted with, and the manifest it came from."""

    name: str
    version: str
    plan: SystemPlan
    manifest: str
