"""A run's trace as a real receiver stores it: the tracer folds the run's events on the
real broker, exports over OTLP to Jaeger, and the span tree is read back from Jaeger's
query API: a retried attempt, its backoff, a tool call answered from the journal, and
a span the agent code started with the standard API, all in the run's trace."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskplane.contract import messages as m
from taskplane.contract.trace_ids import attempt_span_id, trace_id_hex
from taskplane.devstack.jaeger import LocalJaeger
from taskplane.devstack.kafka import LocalStackError
from taskplane.streams.settings import StackSettings
from tests.e2e.e2e_pipeline import Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
pytest.importorskip("opentelemetry.sdk")
TOOLS = str(Path(__file__).resolve().parent / "e2e_trace_tools.py")
TRACED = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: traced}
spec:
  agents:
    - name: fetcher
      model: fake-1
      tools: [trace.lookup]
    - name: writer
      model: fake-1
      dependencies: [fetcher]
      tools: [trace.lookup, trace.store]
  execution: {leaseTimeout: 5s, maxRetries: 3, initialBackoff: 200ms, jitterFraction: 0.0}
"""


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalJaeger]:
    receiver = LocalJaeger(tmp_path_factory.mktemp("jaeger"), cache_dir=StackSettings().cache_dir,
                           progress=print)
    try:
        receiver.start()
    except LocalStackError as error:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Jaeger unavailable: {error} (CI=true: a missing service is a failure)", pytrace=False)
        pytest.skip(f"Jaeger unavailable: {error}")
    yield receiver
    receiver.stop()


def _tracer(pipeline: Pipeline, endpoint: str) -> tuple[Any, threading.Thread]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from taskplane.processors.tracer.app import Tracer, TracerSettings
    from taskplane.processors.tracer.export import OtlpSink

    sink = OtlpSink(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    tracer = Tracer(pipeline.kafka, pipeline.topics, TracerSettings(instance_id=f"{pipeline.topics.prefix}-t"),
                    sink=sink)
    thread = threading.Thread(target=tracer.run, daemon=True)
    thread.start()
    return tracer, thread


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def _parent(span: dict[str, Any]) -> str | None:
    refs = [r for r in span.get("references", []) if r.get("refType") == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


@pytest.mark.timeout(900)  # a first Jaeger build (no `make test` before) takes minutes
def test_a_retried_run_is_one_trace_in_jaeger(pipeline: Pipeline, jaeger: LocalJaeger) -> None:
    plan = pipeline.define(TRACED)
    tracer, thread = _tracer(pipeline, jaeger.otlp_http_endpoint)
    pipeline.env.update({"TASKPLANE_WORKER_TRACING": "true", "OTEL_SERVICE_NAME": "traced-agents",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    pipeline.worker("w1", {"traced": TOOLS})
    run_id = pipeline.publisher.submit_run(plan, {"topic": "kafka"})
    pipeline.publisher.flush()
    pipeline.wait(lambda log: log.events(m.RunSucceeded, run_id), 60)

    expected = 10  # run, 2 fetcher spans, writer: 2 attempts, backoff, 3 tool spans, model.call
    spans: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(spans) < expected and time.monotonic() < deadline:
        spans = jaeger.trace(trace_id_hex(run_id))
        time.sleep(0.3)
    tracer.stop()
    thread.join(30)
    names = sorted(span["operationName"] for span in spans)
    assert len(spans) == expected, names

    by_id = {span["spanID"]: span for span in spans}
    root = next(span for span in spans if _parent(span) is None)
    assert root["operationName"] == "invoke_workflow traced"
    assert _tags(root)["taskplane.run.status"] == "succeeded"
    assert all(_parent(span) in by_id for span in spans if span is not root), "every parent is in the trace"

    writers = sorted((s for s in spans if s["operationName"] == "invoke_agent writer"),
                     key=lambda s: _tags(s)["taskplane.attempt"])
    assert [_tags(s)["taskplane.attempt.status"] for s in writers] == ["failed", "succeeded"]
    assert "model timed out" in str(_tags(writers[0]).get("otel.status_description", ""))
    assert all(_parent(s) == root["spanID"] for s in writers)
    backoff = next(s for s in spans if s["operationName"] == "backoff writer")
    assert _parent(backoff) == root["spanID"] and backoff["duration"] >= 150_000  # µs

    retry_tools = {s["operationName"]: _tags(s) for s in spans if _parent(s) == writers[1]["spanID"]}
    assert retry_tools["execute_tool trace.lookup"]["taskplane.tool.journal_hit"] is True
    assert retry_tools["execute_tool trace.store"]["taskplane.tool.journal_hit"] is False
    assert "model.call" in retry_tools, "the agent's own span is a child of its attempt's span"
    second = writers[1]
    assert int(second["spanID"], 16) == attempt_span_id(run_id, "writer", 2, _tags(second)["taskplane.lease.epoch"])
    first_lookup = next(s for s in spans if _parent(s) == writers[0]["spanID"])
    assert _tags(first_lookup)["taskplane.tool.journal_hit"] is False
    assert _tags(first_lookup)["gen_ai.tool.call.id"] == retry_tools["execute_tool trace.lookup"]["gen_ai.tool.call.id"]
