"""Span records → the OpenTelemetry SDK's OTLP exporter.

The spans are finished facts with ids of their own (``contract/trace_ids.py``), so they
skip the SDK's tracer (whose id generator and clock would make new ones) and go to its
exporter as ``ReadableSpan``s. The exporter reads the standard variables:
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``..._HEADERS``, ``..._TIMEOUT``,
``..._PROTOCOL`` (``http/protobuf``, the default, or ``grpc`` when
``opentelemetry-exporter-otlp-proto-grpc`` is installed), and the resource from
``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from taskplane.processors.tracer.otlp_wire import WireEncoder
from taskplane.processors.tracer.spans import SpanRecord
from taskplane.streams.exceptions import StreamsError

_NS = 1_000_000
# A zero-length span (a journal hit, a dead letter) ends 1 ns after it starts: receivers
# (Jaeger) "sanitize" a zero duration with a warning, which made a re-exported copy
# differ from the first and escape their de-duplication of identical spans.


class TracesUnavailable(StreamsError):
    """The OpenTelemetry packages are missing: ``pip install 'taskplane[traces]'``."""

    retryable = False


class OtlpSink:
    """Exports span records; ``export`` returns False when the receiver did not take them."""

    def __init__(self, exporter: Any = None, service_name: str = "taskplane") -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import Event, ReadableSpan
            from opentelemetry.sdk.trace.export import SpanExportResult
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
            from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
        except ImportError as error:
            raise TracesUnavailable(f"tracing needs the OpenTelemetry SDK: pip install 'taskplane[traces]' "
                                    f"({error})") from error
        os.environ.setdefault("OTEL_SERVICE_NAME", service_name)
        self._resource = _deterministic(Resource.create(), Resource)
        self._scope = InstrumentationScope("taskplane.tracer")
        self._exporter = exporter if exporter is not None else _otlp_exporter()
        self._success = SpanExportResult.SUCCESS
        self._wire = WireEncoder(dict(self._resource.attributes), self._scope.name)
        self._send_bytes = _byte_sender(self._exporter)
        self._types = (ReadableSpan, Event, SpanContext, SpanKind.INTERNAL, Status, StatusCode, TraceFlags(1))

    def readable(self, spans: Sequence[SpanRecord]) -> list[Any]:
        readable_span, event_type, context, internal, status, code, sampled = self._types
        ok, unset = status(code.OK), status(code.UNSET)
        out = []
        for span in spans:
            parent = None if span.parent_id is None else context(span.trace_id, span.parent_id, False, sampled)
            if span.error is not None:
                state = status(code.ERROR, span.error)
            else:
                state = ok if span.ok else unset
            events = [event_type(e.name, e.attributes, e.at_ms * _NS) for e in span.events]
            out.append(readable_span(
                name=span.name, context=context(span.trace_id, span.span_id, False, sampled), parent=parent,
                resource=self._resource, attributes=span.attributes, events=events, kind=internal,
                status=state, start_time=span.start_ms * _NS, end_time=max(span.end_ms * _NS, span.start_ms * _NS + 1),
                instrumentation_scope=self._scope))
        return out

    def export(self, spans: Sequence[SpanRecord]) -> bool:
        if not spans:
            return True
        if self._send_bytes is not None:  # the request encoded here (otlp_wire.py), sent by the SDK's client
            return self._send_bytes(self._wire.request(spans))
        return bool(self._exporter.export(self.readable(spans)) == self._success)

    def close(self) -> None:
        self._exporter.shutdown()


def _deterministic(resource: Any, resource_type: Any) -> Any:
    """The resource without the SDK's random ``service.instance.id`` (unless the operator
    set one): a span's resource is part of it, and a span exported again by another
    tracer process must be the same span, or receivers keep both copies. Its hash is
    computed once: the OTLP encoder groups spans by resource, hashing it for every span
    (a JSON dump each time, ~10 % of the tracer's CPU)."""
    attributes = dict(resource.attributes)
    if "service.instance.id=" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes.pop("service.instance.id", None)

    class _Fixed(resource_type):  # type: ignore[misc,valid-type]
        _hash = 0

        def __hash__(self) -> int:
            if not self._hash:
                self._hash = super().__hash__()
            return self._hash

        def __eq__(self, other: object) -> bool:
            return self is other or bool(super().__eq__(other))

    return _Fixed(attributes, resource.schema_url)


def _byte_sender(exporter: Any) -> Callable[[bytes], bool] | None:
    """How to send an encoded request through ``exporter``'s own HTTP client (its endpoint,
    headers, TLS, compression, timeout and retries, all from the standard variables), or
    None: then spans go through ``exporter.export`` as ReadableSpans. The client is the
    OTLP/HTTP exporter's private ``_client`` (opentelemetry-exporter-otlp-proto-http
    1.4x); another exporter (gRPC, a test's, an older SDK's) takes the SDK's path, and
    receivers get the same spans either way (tests/processors/tracer/test_otlp_wire.py)."""
    client = getattr(exporter, "_client", None)
    send = getattr(client, "export", None)
    if type(exporter).__module__ != _HTTP_EXPORTER or not callable(send):
        return None
    return lambda data: bool(send(data).success)


_HTTP_EXPORTER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def _otlp_exporter() -> Any:
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            raise TracesUnavailable("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc"
                                    ) from error
        return OTLPSpanExporter()
    if protocol != "http/protobuf":
        raise TracesUnavailable(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported "
                                "(http/protobuf or grpc)")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()
