"""Wiring: the breaker decider on the transactional runtime (partitioned by tool).

Started by ``taskplane processor run breaker`` (``taskplane/processes.py``).
"""

from __future__ import annotations

from typing import Any

from taskplane.processors.breaker.decider import BreakerDecider
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics, catalog_spec

BREAKER = ProcessorSpec("breaker", "tool-outcomes", "breaker-events", "breakers", catalog_spec("breakers"))


def breaker_runtime(
    kafka_config: dict[str, Any],
    topics: Topics,
    settings: RuntimeSettings | None = None,
    observer: RuntimeObserver | None = None,
) -> ProcessorRuntime[Any, Any, Any]:
    return ProcessorRuntime(BreakerDecider(), BREAKER.under(topics), kafka_config, topics,
                            settings, observer=observer)
