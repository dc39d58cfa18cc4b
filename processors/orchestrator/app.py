"""Wiring: the orchestrator decider on the transactional runtime.

Started by ``taskplane processor run orchestrator`` (``taskplane/processes.py``), the
one way to start a processor; tests and benchmarks build the runtime here directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskplane.contract.messages import Command
from taskplane.contract.plans import PlanBook
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.hints import OrchestratorHints
from taskplane.processors.orchestrator.retention import DAY_MS, HOUR_MS, Retention
from taskplane.processors.orchestrator.spare import DEFAULT_WINDOW_MS, SpareSlots
from taskplane.streams.plan_source import SystemsPlans
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics, catalog_spec

ORCHESTRATOR = ProcessorSpec(
    "orchestrator", "commands", "events", "orchestrator-changelog", catalog_spec("orchestrator-changelog"),
    inputs=get_args(Command),
)


class OrchestratorSettings(BaseSettings):
    """How long finished runs stay (a system's spec.execution.finishedRunRetention wins),
    and how fresh a worker's reported free slot must be to get a new run's root task."""

    model_config = SettingsConfigDict(env_prefix="TASKPLANE_ORCHESTRATOR_", extra="ignore")

    finished_run_retention_ms: int = Field(default=HOUR_MS, ge=0,
                                           description="Whole state kept this long after a run finished.")
    final_record_retention_ms: int = Field(default=7 * DAY_MS, ge=0,
                                           description="Final record (status, finish time) kept this long.")

    root_grant_window_ms: int = Field(
        default=DEFAULT_WINDOW_MS, ge=0,
        description="A root task is granted at submit to a worker that reported a free slot at most this "
                    "long before (0: roots are always offered on `work` and claimed).")

    approval_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TASKPLANE_APPROVAL_KEY", "approval_key"),
        description="The key a person's approval decisions are signed with (TASKPLANE_APPROVAL_KEY); "
                    "unset: every decision is refused (approvals fail closed). Never give it to workers.")

    def retention(self) -> Retention:
        return Retention(self.finished_run_retention_ms,
                         max(self.final_record_retention_ms, self.finished_run_retention_ms))


def orchestrator_decider(plans: PlanBook, orchestrator: OrchestratorSettings) -> OrchestratorDecider:
    """The decider as production runs it (``taskplane verify`` re-decides with this)."""
    key = orchestrator.approval_key
    return OrchestratorDecider(plans, orchestrator.retention(),
                               key.get_secret_value().encode() if key is not None else None)


def orchestrator_hints(plans: PlanBook, orchestrator: OrchestratorSettings) -> Callable[[], OrchestratorHints]:
    """The hint source of one partition, as production makes it: free slots (unless the
    window is 0) and plan pins. The free slots are one store for all the process's
    partitions: a completion on one partition frees a slot a submit on any other may be
    granted (a store per partition gave a root grant to about 1/P of the runs at light
    load). A transaction spans all of them, so its commit or roll back is the store's."""
    window = orchestrator.root_grant_window_ms
    spare = SpareSlots(window) if window else None
    return lambda: OrchestratorHints(plans, spare)


def orchestrator_runtime(
    kafka_config: dict[str, Any],
    topics: Topics,
    settings: RuntimeSettings | None = None,
    observer: RuntimeObserver | None = None,
    orchestrator: OrchestratorSettings | None = None,
) -> ProcessorRuntime[Any, Any, Any]:
    table = SystemsPlans(kafka_config, topics.systems)
    plans = PlanBook(table)
    orchestrator = orchestrator or OrchestratorSettings()
    return ProcessorRuntime(orchestrator_decider(plans, orchestrator), ORCHESTRATOR.under(topics), kafka_config,
                            topics, settings, observer=observer, companions=[table],
                            hints=orchestrator_hints(plans, orchestrator))
