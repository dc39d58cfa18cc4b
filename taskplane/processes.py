"""The one way to start a processor: ``taskplane processor run NAME``.

Each processor's wiring (``processors/<name>/app.py``) builds its runner from
settings passed in and knows nothing of endpoints, metrics or signals; this module
adds those, so a pod, ``make dev-up`` and a test start a processor the same way.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from taskplane.probes import ProcessorReadiness, ProcessState, postgres_check, serve_endpoints
from taskplane.streams.runtime import run_until_signalled
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics

log = logging.getLogger(__name__)

PROCESSORS = ("orchestrator", "breaker", "dispatcher", "projector", "tracer", "cron")


def run_processor(
    name: str,
    kafka_config: dict[str, Any],
    topics: Topics,
    database_url: Callable[[], str],
    instance: str | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run processor ``name`` (one of PROCESSORS) until SIGTERM/SIGINT, which ends it
    with a final commit. ``database_url`` is asked only by the projector. /metrics,
    /healthz and /readyz are served first (``PortInUse`` when a set port is taken)."""
    if name == "projector":
        _run_projector(kafka_config, topics, database_url(), instance, on_ready)
        return
    if name == "tracer":
        _run_tracer(kafka_config, topics, instance, on_ready)
        return
    from taskplane.metrics import PrometheusObserver
    from taskplane.processors.breaker.app import breaker_runtime
    from taskplane.processors.cron.app import cron_runtime
    from taskplane.processors.dispatch.app import dispatcher_runtime
    from taskplane.processors.orchestrator.app import orchestrator_runtime

    settings = RuntimeSettings(instance_id=instance) if instance else RuntimeSettings()
    build = {"orchestrator": orchestrator_runtime, "breaker": breaker_runtime, "cron": cron_runtime,
             "dispatcher": dispatcher_runtime}[name]
    registry = CollectorRegistry()
    readiness = ProcessorReadiness(PrometheusObserver(registry))  # metrics and readiness, one observer
    state = ProcessState([readiness.check])
    serve_endpoints(name, registry, state)
    runtime = build(kafka_config, topics, settings, observer=readiness)
    state.add_check(lambda: None if runtime.ready() else "broker unreachable or last transaction not committed")
    freeze_startup_heap()
    run_until_signalled(runtime, on_ready=on_ready)


def _run_projector(kafka_config: dict[str, Any], topics: Topics, database_url: str, instance: str | None,
                   on_ready: Callable[[], None] | None) -> None:
    from taskplane.metrics import MetricsSettings, ReadModelCollector
    from taskplane.processors.projector.app import Projector, ProjectorSettings

    settings = ProjectorSettings(instance_id=instance) if instance else ProjectorSettings()
    registry = CollectorRegistry()
    metrics_settings = MetricsSettings()
    if metrics_settings.port != 0:
        registry.register(ReadModelCollector(database_url, settings.schema_name, kafka_config, topics))
    projector = Projector(kafka_config, topics, database_url, settings, registry)
    state = ProcessState([lambda: None if projector.ready() else "projector not consuming (loop stopped or broker away)",
                          postgres_check(database_url)])
    serve_endpoints("projector", registry, state, metrics_settings)

    def stop(*_: object) -> None:
        state.stopping()
        projector.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    if on_ready is not None:
        on_ready()
    freeze_startup_heap()
    projector.run()


def _run_tracer(kafka_config: dict[str, Any], topics: Topics, instance: str | None,
                on_ready: Callable[[], None] | None) -> None:
    from taskplane.processors.tracer.app import Tracer, TracerSettings

    settings = TracerSettings(instance_id=instance) if instance else TracerSettings()
    registry = CollectorRegistry()
    tracer = Tracer(kafka_config, topics, settings, registry=registry)
    state = ProcessState([lambda: None if tracer.ready() else "tracer not consuming"])
    serve_endpoints("tracer", registry, state)

    def stop(*_: object) -> None:
        state.stopping()
        tracer.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    if on_ready is not None:
        on_ready()
    freeze_startup_heap()
    tracer.run()


def freeze_startup_heap() -> None:
    """Leave what start-up built (modules, classes, settings, the user's agents: 70-85
    thousand objects) out of the cyclic collector's full passes, which a busy process
    runs every few seconds: each walked all of them, 40-90 ms of a worker at saturation
    (docs/benchmarks.md). Called once, before the serving loop."""
    gc.collect()
    gc.freeze()
