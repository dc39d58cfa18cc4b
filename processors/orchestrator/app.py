"""Wiring: the orchestrator and breaker deciders on the transactional runtime.

    python -m taskplane.processors.orchestrator.app [--bootstrap B] [--prefix P] [--instance I] [--breaker]

Without ``--bootstrap`` the endpoints come from TASKPLANE_BOOTSTRAP_SERVERS or the
running dev stack.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from taskplane.processors.breaker.decider import BreakerDecider
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec, run_until_signalled
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics, catalog


def _changelog_spec(role: str) -> Any:
    return next(spec for spec in catalog() if spec.role == role)


ORCHESTRATOR = ProcessorSpec(
    "orchestrator", "commands", "events", "orchestrator-changelog", _changelog_spec("orchestrator-changelog")
)
BREAKER = ProcessorSpec("breaker", "tool-outcomes", "breaker-events", "breakers", _changelog_spec("breakers"))


def orchestrator_runtime(
    kafka_config: dict[str, Any],
    topics: Topics,
    settings: RuntimeSettings | None = None,
    observer: RuntimeObserver | None = None,
) -> ProcessorRuntime[Any, Any, Any]:
    return ProcessorRuntime(OrchestratorDecider(), _grouped(ORCHESTRATOR, topics), kafka_config, topics,
                            settings, observer=observer)


def breaker_runtime(
    kafka_config: dict[str, Any],
    topics: Topics,
    settings: RuntimeSettings | None = None,
    observer: RuntimeObserver | None = None,
) -> ProcessorRuntime[Any, Any, Any]:
    return ProcessorRuntime(BreakerDecider(), _grouped(BREAKER, topics), kafka_config, topics,
                            settings, observer=observer)


def _grouped(spec: ProcessorSpec, topics: Topics) -> ProcessorSpec:
    # Group and transactional ids carry the prefix, so two prefixes never fence each other.
    return ProcessorSpec(f"{topics.prefix}.{spec.name}", spec.input, spec.events, spec.changelog, spec.changelog_spec)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the orchestrator (or the breaker) processor.")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: env or dev stack)")
    parser.add_argument("--prefix", help="topic prefix (default: TASKPLANE_TOPIC_PREFIX or 'taskplane')")
    parser.add_argument("--instance", help="stable instance id (default: hostname)")
    parser.add_argument("--breaker", action="store_true", help="run the breaker processor instead")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    from taskplane.streams.devstack import resolve_endpoints
    from taskplane.streams.settings import StackSettings

    stack = StackSettings()
    bootstrap = args.bootstrap or stack.bootstrap_servers or resolve_endpoints(stack).bootstrap_servers
    topics = Topics(args.prefix or stack.topic_prefix)
    settings = RuntimeSettings(instance_id=args.instance) if args.instance else RuntimeSettings()
    build = breaker_runtime if args.breaker else orchestrator_runtime
    runtime = build(stack.kafka_config(bootstrap), topics, settings, observer=serve_observer())
    run_until_signalled(runtime, on_ready=lambda: print("ready", flush=True))


def serve_observer() -> RuntimeObserver:
    """A Prometheus observer with its /metrics endpoint (TASKPLANE_METRICS_PORT, 0 = off)."""
    from prometheus_client import CollectorRegistry

    from taskplane.metrics import PrometheusObserver, serve_metrics

    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    try:
        serve_metrics(registry)
    except OSError as error:  # metrics are not worth refusing to process commands
        logging.getLogger(__name__).error("metrics endpoint not started: %s", error)
    return observer


if __name__ == "__main__":
    main()
