"""The attempt's span as agent code's OpenTelemetry context (TASKPLANE_WORKER_TRACING):
a span the agent starts is a child of the attempt's deterministic span, in the run's trace."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from taskplane.contract.messages import Assignment, CompleteTask
from taskplane.contract.plan import AgentPlan, Isolation, ToolPlan
from taskplane.contract.trace_ids import attempt_span_id, tool_span_id, trace_id, traceparent
from taskplane.workers.attempt import Attempt
from taskplane.workers.sdk import AgentContext, Registry, agent, tool
from taskplane.workers.settings import WorkerSettings

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
export = pytest.importorskip("opentelemetry.sdk.trace.export")


@agent("planner")
def planner(ctx: AgentContext) -> dict[str, Any]:
    with trace.get_tracer("agent-code").start_as_current_span("model.call"):
        return {"traceparent": ctx.traceparent}


@tool("trace.echo")
def trace_echo(idempotency_key: str, traceparent: str | None = None) -> dict[str, Any]:
    return {"key": idempotency_key, "traceparent": traceparent}


@agent("caller")
def caller(ctx: AgentContext) -> dict[str, Any]:
    return dict(ctx.call_tool("trace.echo"))


@agent("async_planner")
async def async_planner(ctx: AgentContext) -> dict[str, Any]:
    with trace.get_tracer("agent-code").start_as_current_span("model.call.async"):
        await asyncio.sleep(0)
        return {"traceparent": ctx.traceparent}


@pytest.fixture(scope="module")
def exported() -> Any:
    """The application's own provider (the worker keeps it) with an in-memory exporter."""
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def _attempt(task: str, sent: list[Any], tracing: bool) -> Attempt:
    from taskplane.workers.tracing import AttemptContexts

    registry = Registry()
    registry.add(planner)
    registry.add(async_planner)
    registry.add(caller)
    registry.add(trace_echo)
    assignment = Assignment("w1", "run-7", task, 3, True, None, 5, 0, 3_000, "sys", None, "{}", {}, ())
    tools = (ToolPlan("trace.echo", 2_000, 0, Isolation.NONE, 3, 1_000),)
    return Attempt(assignment, AgentPlan(task, None, tools, ()), registry, WorkerSettings(worker_id="w1"),
                   sent.append, lambda _: None, threading.Event(),
                   contexts=AttemptContexts() if tracing else None)


def test_an_agent_span_is_a_child_of_the_attempt_span(exported: Any) -> None:
    sent: list[Any] = []
    assert _attempt("planner", sent, tracing=True).run() == "CompleteTask"
    span = next(s for s in exported.get_finished_spans() if s.name == "model.call")
    assert span.context.trace_id == trace_id("run-7")
    assert span.parent.span_id == attempt_span_id("run-7", "planner", 3, 5)
    done = sent[-1]
    assert isinstance(done, CompleteTask) and traceparent("run-7", "planner", 3, 5) in done.output
    assert trace.get_current_span() is trace.INVALID_SPAN, "the context is left when the attempt ends"


def test_an_async_agent_span_is_a_child_of_its_attempt_span(exported: Any) -> None:
    sent: list[Any] = []

    async def send(command: Any) -> None:
        sent.append(command)

    assert asyncio.run(_attempt("async_planner", sent, tracing=True).run_async(send)) == "CompleteTask"
    span = next(s for s in exported.get_finished_spans() if s.name == "model.call.async")
    assert span.parent.span_id == attempt_span_id("run-7", "async_planner", 3, 5)


def test_without_tracing_an_agent_span_starts_its_own_trace(exported: Any) -> None:
    exported.clear()
    sent: list[Any] = []
    _attempt("planner", sent, tracing=False).run()
    span = next(s for s in exported.get_finished_spans() if s.name == "model.call")
    assert span.parent is None and span.context.trace_id != trace_id("run-7")
    assert traceparent("run-7", "planner", 3, 5) in sent[-1].output, "the header is there either way"


def test_a_tool_declaring_traceparent_gets_its_execute_tool_span_header() -> None:
    sent: list[Any] = []
    _attempt("caller", sent, tracing=False).run()
    output = json.loads(sent[-1].output)
    span = tool_span_id("run-7", "caller", 5, output["key"], 1)  # the tracer's id of the first try
    assert output["traceparent"] == f"00-{trace_id('run-7'):032x}-{span:016x}-01"
