"""Metrics scraped over HTTP after a scenario have the expected values."""

from __future__ import annotations

import socket
import threading
import urllib.request
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from taskplane.contract import messages as m
from taskplane.contract.governance import Usage
from taskplane.metrics import (
    MetricsSettings,
    PrometheusObserver,
    ReadModelCollector,
    WorkerMetrics,
)
from taskplane.probes import ProcessState, serve_endpoints
from taskplane.processors.projector.app import Projector
from taskplane.streams.topics import Topics, catalog, ensure_topics
from tests.processors.projector._log import log_ends, produce_runs, run_events, wait_projected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    server = serve_endpoints("test", registry, ProcessState(), MetricsSettings(port=_free_port(), address="127.0.0.1"))
    assert server is not None
    try:
        text = urllib.request.urlopen(f"{server.url}/metrics", timeout=90).read().decode()
    finally:
        server.close()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_observer_counts_what_the_events_say() -> None:
    registry = CollectorRegistry()
    now = [1000.0]
    observer = PrometheusObserver(registry, clock=lambda: now[0])
    WorkerMetrics(registry).lease_renewal_failures.labels("summarizer", "timeout").inc()
    for event in run_events("r1", 0, renewals=3, dead_letter=True):
        now[0] += 1
        observer.event("orchestrator", event)
    observer.event("orchestrator", m.CommandRejected("r1", "RenewLease", "parser", "w", "stale epoch"))
    observer.committed("orchestrator", 0.004)
    observer.batch("orchestrator", 10, 0.01)
    samples = _scrape(registry)
    assert samples[("taskplane_processor_commit_seconds_count", (("processor", "orchestrator"),))] == 1
    assert samples[("taskplane_processor_commit_seconds_sum", (("processor", "orchestrator"),))] == 0.004
    assert samples[("taskplane_dead_letter_transitions_total", (("agent", "summarizer"),))] == 1
    assert samples[("taskplane_retries_total", (("agent", "summarizer"), ("tool", "text.summarize")))] == 1
    assert samples[("taskplane_lease_renewals_total", (("agent", "summarizer"),))] == 9
    assert samples[("taskplane_lease_expirations_total", (("agent", "publisher"),))] == 1
    assert samples[("taskplane_lease_renewals_rejected_total", ())] == 1
    assert samples[("taskplane_lease_renewal_failures_total", (("agent", "summarizer"), ("reason", "timeout")))] == 1
    assert samples[("taskplane_task_completion_seconds_count", (("agent", "summarizer"),))] == 1
    assert samples[("taskplane_run_duration_seconds_count", ())] == 1
    assert samples[("taskplane_task_replays_total", (("agent", "summarizer"),))] == 1
    assert samples[("taskplane_processor_records_total", (("processor", "orchestrator"),))] == 10



def test_usage_is_counted_by_system_agent_and_model() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    submitted = next(e for e in run_events("r1", 0) if isinstance(e, m.RunSubmitted))
    observer.event("orchestrator", submitted)
    system = submitted.plan.name
    observer.event("orchestrator", m.ToolCallSucceeded("r1", "parser", 1, "k", "llm", 0, "{}",
                                                       (Usage("gpt", 120, 1_500_000),)))
    observer.event("orchestrator", m.TaskSucceeded("r1", "parser", 1, 1, "{}", (Usage("gpt", 30, 500_000),)))
    observer.event("orchestrator", m.AttemptFailed("r1", "summarizer", 1, 1, "x", m.FailureKind.ERROR, True,
                                                   (Usage("small", 7, 0),)))
    samples = _scrape(registry)
    labels = (("agent", "parser"), ("model", "gpt"), ("system", system))
    assert samples[("taskplane_tokens_total", labels)] == 150
    assert samples[("taskplane_cost_total", labels)] == 2.0
    assert samples[("taskplane_tokens_total", (("agent", "summarizer"), ("model", "small"), ("system", system)))] == 7

@pytest.mark.kafka
@pytest.mark.postgres
def test_read_model_gauges_and_lag_after_a_dead_letter(
    kafka_config: dict[str, Any], unique_prefix: str, fresh_database: str
) -> None:
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog())
    events = run_events("stuck", 0, dead_letter=True)
    cut = next(i for i, e in enumerate(events) if isinstance(e, m.TaskReplayed))
    asking = run_events("asking", 0)[:3]  # submitted, the parser ready and leased; then it asks a person
    asking += [m.LeaseReleased("asking", "parser", 1, "w-parser"),
               m.ApprovalRequested("asking", "parser", "k-1", "document.extract", 0, "{}", "", 60_000, 0, 60_000, 1, 1)]
    produce_runs(kafka_config, topics.events, [("ok", run_events("ok", 0)), ("stuck", events[:cut]),
                                               ("asking", asking)], breakers_topic=topics.breakers)
    projector = Projector(kafka_config, topics, fresh_database)
    thread = threading.Thread(target=projector.run, daemon=True)
    thread.start()
    try:
        wait_projected(fresh_database, {**log_ends(kafka_config, topics.events),
                                        **log_ends(kafka_config, topics.breakers)})
        registry = CollectorRegistry()
        registry.register(ReadModelCollector(fresh_database, "readmodel", kafka_config, topics))
        samples = _scrape(registry)
    finally:
        projector.stop()
        thread.join(30)
    system = (("system", "document-pipeline"),)
    assert samples[("taskplane_dead_letter_tasks", system)] == 1
    assert samples[("taskplane_blocked_tasks", system)] == 1
    assert samples[("taskplane_tasks", (("status", "succeeded"),))] == 4
    assert samples[("taskplane_tasks_in_progress", ())] == 0
    assert samples[("taskplane_pending_approvals", ())] == 1
    assert samples[("taskplane_tasks", (("status", "awaiting_approval"),))] == 1
    assert samples[("taskplane_oldest_pending_approval_age_seconds", ())] > 0
    assert samples[("taskplane_breaker_state", (("tool", "text.summarize"),))] == 2
    assert samples[("taskplane_breaker_state", (("tool", "document.extract"),))] == 0
    # caught up: what is left are transaction markers (at most one per partition), not records
    assert samples[("taskplane_consumer_lag", (("group", f"{unique_prefix}.projector"),
                                               ("topic", topics.events)))] <= 4
