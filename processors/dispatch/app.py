"""Wiring: the dispatcher decider on the transactional runtime (partitioned by system).

Started by ``taskplane processor run dispatcher`` (``taskplane/processes.py``).
"""

from __future__ import annotations

from typing import Any, get_args

from taskplane.contract.scheduling import DispatchCommand
from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics, catalog_spec

DISPATCHER = ProcessorSpec("dispatcher", "dispatch", "dispatch-events", "dispatcher-changelog",
                           catalog_spec("dispatcher-changelog"), inputs=get_args(DispatchCommand))
# A system's whole state is one key: a transaction per notice would write it each time.
# 20 ms batches keep the release latency far under a task's, and the changelog small.
DISPATCHER_LINGER_MS = 20


def dispatcher_runtime(
    kafka_config: dict[str, Any],
    topics: Topics,
    settings: RuntimeSettings | None = None,
    observer: RuntimeObserver | None = None,
) -> ProcessorRuntime[Any, Any, Any]:
    settings = (settings or RuntimeSettings()).defaulting(linger_ms=DISPATCHER_LINGER_MS)
    return ProcessorRuntime(DispatchDecider(), DISPATCHER.under(topics), kafka_config, topics,
                            settings, observer=observer)
