"""Wiring: the orchestrator decider on the transactional runtime.

Started by ``taskplane processor run orchestrator`` (``taskplane/processes.py``), the
one way to start a processor; tests and benchmarks build the runtime here directly.
"""

from __future__ import annotations

from typing import Any

from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics, catalog_spec

ORCHESTRATOR = ProcessorSpec(
    "orchestrator", "commands", "events", "orchestrator-changelog", catalog_spec("orchestrator-changelog")
)


def orchestrator_runtime(
    kafka_config: dict[str, Any],
    topics: Topics,
    settings: RuntimeSettings | None = None,
    observer: RuntimeObserver | None = None,
) -> ProcessorRuntime[Any, Any, Any]:
    return ProcessorRuntime(OrchestratorDecider(), ORCHESTRATOR.under(topics), kafka_config, topics,
                            settings, observer=observer)
