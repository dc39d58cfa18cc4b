"""Agents and tools of the trace test (loaded by worker processes by path): the writer
fails its first attempt after a lookup, so its retry is answered from the journal, and
starts a span of its own with the standard OpenTelemetry API."""

from __future__ import annotations

from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("trace.lookup")
def lookup(topic: str) -> dict[str, Any]:
    return {"topic": topic, "facts": 3}


@tool("trace.store")
def store(text: str, traceparent: str | None = None) -> dict[str, Any]:
    return {"stored": len(text), "traceparent": traceparent}


@agent("fetcher")
def fetcher(ctx: AgentContext) -> dict[str, Any]:
    return dict(ctx.call_tool("trace.lookup", topic=ctx.run_input["topic"]))


@agent("writer")
def writer(ctx: AgentContext) -> dict[str, Any]:
    from opentelemetry import trace

    facts = ctx.call_tool("trace.lookup", topic=ctx.run_input["topic"])
    if ctx.attempt == 1:
        raise RuntimeError("the model timed out")
    with trace.get_tracer("writer").start_as_current_span("model.call") as span:
        span.set_attribute("gen_ai.request.model", "fake-1")
        draft = f"{facts['facts']} facts about {facts['topic']}"
    return dict(ctx.call_tool("trace.store", text=draft))
