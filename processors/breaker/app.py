"""Wiring: the breaker decider on the transactional runtime (partitioned by tool).

Started by ``taskplane processor run breaker`` (``taskplane/processes.py``).
"""

from __future__ import annotations

from typing import Any, get_args

from taskplane.processors.breaker.decider import BreakerCommand, BreakerDecider
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics, catalog_spec

BREAKER = ProcessorSpec("breaker", "tool-outcomes", "breaker-events", "breakers", catalog_spec("breakers"),
                        inputs=get_args(BreakerCommand))
# Breaker state is advisory (workers read it to fail fast): a breaker that opens 200 ms
# later costs little, while a transaction per tool call was a third of the broker's CPU
# at light load (docs/benchmarks.md). TASKPLANE_RUNTIME_LINGER_MS overrides it.
BREAKER_LINGER_MS = 200
# Permits are decided at Ticks when a token comes due: a Tick every 50 ms keeps the log
# time of grants within 50 ms of their due time, well inside the bucket's 2 % burst for
# periods of 10 s and more (docs/scheduling.md). Ticks are only written for partitions
# with a due timer, so an idle governor writes none. TASKPLANE_RUNTIME_TICK_INTERVAL_MS overrides it.
BREAKER_TICK_INTERVAL_MS = 50


def breaker_runtime(
    kafka_config: dict[str, Any],
    topics: Topics,
    settings: RuntimeSettings | None = None,
    observer: RuntimeObserver | None = None,
) -> ProcessorRuntime[Any, Any, Any]:
    settings = (settings or RuntimeSettings()).defaulting(linger_ms=BREAKER_LINGER_MS,
                                                          tick_interval_ms=BREAKER_TICK_INTERVAL_MS)
    return ProcessorRuntime(BreakerDecider(), BREAKER.under(topics), kafka_config, topics,
                            settings, observer=observer)
