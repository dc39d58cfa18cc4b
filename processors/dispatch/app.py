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
# No linger: a commit writes only the offers its batch changed (parts.py), so a batch is
# what arrived while the last one committed. A 20 ms linger (when the whole state was one
# record) was 20 ms on every release and on every take that frees the window.
DISPATCHER_LINGER_MS = 0


def dispatcher_runtime(
    kafka_config: dict[str, Any],
    topics: Topics,
    settings: RuntimeSettings | None = None,
    observer: RuntimeObserver | None = None,
) -> ProcessorRuntime[Any, Any, Any]:
    settings = (settings or RuntimeSettings()).defaulting(linger_ms=DISPATCHER_LINGER_MS)
    return ProcessorRuntime(DispatchDecider(), DISPATCHER.under(topics), kafka_config, topics,
                            settings, observer=observer)
