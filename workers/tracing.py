"""The attempt's span as the agent code's OpenTelemetry context (``TASKPLANE_WORKER_TRACING``).

The tracer processor exports each attempt as an ``invoke_agent`` span whose id is a
function of the log (``contract/trace_ids.py``), so the worker can name it without
waiting for it: while an agent runs, a non-recording span with that id is the current
context, and spans the agent starts with the standard API are its children, in the
run's trace. The worker sets up the SDK's exporter from the ``OTEL_*`` variables when
the application has not set a tracer provider of its own.

Off (the default), nothing here is imported: the attempt checks one ``None``.
"""

from __future__ import annotations

import logging
from typing import Any

from taskplane.contract.messages import Assignment
from taskplane.contract.trace_ids import attempt_span_id, trace_id
from taskplane.workers.exceptions import WorkerError

log = logging.getLogger(__name__)


class AttemptContexts:
    """``enter(assignment)`` makes the attempt's span current (returns a token for
    ``leave``), in the calling thread or asyncio task."""

    def __init__(self) -> None:
        try:
            from opentelemetry import context, trace
        except ImportError as error:
            raise WorkerError("TASKPLANE_WORKER_TRACING needs the OpenTelemetry SDK: "
                              "pip install 'taskplane[traces]'") from error
        self._context = context
        self._trace = trace
        self._sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        _install_provider(trace)

    def enter(self, assignment: Assignment) -> Any:
        a = assignment
        span = self._trace.NonRecordingSpan(self._trace.SpanContext(
            trace_id(a.run_id), attempt_span_id(a.run_id, a.task, a.attempt, a.epoch), True, self._sampled))
        return self._context.attach(self._trace.set_span_in_context(span))

    def leave(self, token: Any) -> None:
        self._context.detach(token)


def _install_provider(trace: Any) -> None:
    """An SDK provider exporting over OTLP (the ``OTEL_*`` variables), unless the
    application installed one (then its choice stands)."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("tracing: agent spans go to the OTLP endpoint of OTEL_EXPORTER_OTLP_* (the SDK's defaults)")


def shutdown() -> None:
    """Flush what agents' spans are still buffered (at worker exit)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
