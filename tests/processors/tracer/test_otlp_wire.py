"""The tracer's own OTLP encoding (``otlp_wire.py``) against the SDK's: the same
``ExportTraceServiceRequest`` for any span records, and the bytes sent by the SDK's
HTTP client (a real HTTP server takes them here)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.processors.tracer.spans import SpanEvent, SpanRecord

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from taskplane.processors.tracer.export import OtlpSink  # noqa: E402


class _Null:
    def export(self, spans: Any) -> None:
        return None

    def shutdown(self) -> None:
        return None


values = st.one_of(st.text(max_size=30), st.booleans(), st.integers(-(2**63), 2**63 - 1))
attributes = st.dictionaries(st.text(min_size=1, max_size=20), values, max_size=6)
events = st.builds(SpanEvent, st.text(max_size=20), st.integers(0, 2**40), attributes)
ids = st.integers(1, 2**64 - 1)
spans = st.builds(
    SpanRecord, st.integers(1, 2**128 - 1), ids, st.none() | ids, st.text(max_size=40),
    st.integers(0, 2**40), st.integers(0, 2**40), attributes, st.lists(events, max_size=3).map(tuple),
    st.booleans(), st.none() | st.text(max_size=50))


def sdk_request(sink: OtlpSink, records: list[SpanRecord]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(encode_spans(sink.readable(records)).SerializePartialToString())


@settings(max_examples=300, deadline=None)
@given(st.lists(spans, min_size=1, max_size=8))
def test_the_request_is_the_sdks(records: list[SpanRecord]) -> None:
    sink = OtlpSink(_Null())
    ours = ExportTraceServiceRequest.FromString(sink._wire.request(records))
    assert ours == sdk_request(sink, records)


def test_repeated_pairs_are_encoded_once_and_stay_right() -> None:
    sink = OtlpSink(_Null())
    span = SpanRecord(1, 2, None, "s", 1, 2, {"a": 1, "b": True, "c": "x"},
                      (SpanEvent("e", 1, {"a": True, "b": 1}),))  # the same keys, swapped types
    for _ in range(2):
        assert ExportTraceServiceRequest.FromString(sink._wire.request([span])) == sdk_request(sink, [span])


class _Collector(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def test_the_http_exporter_sends_the_encoded_request() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces")
        sink = OtlpSink(exporter)
        assert sink._send_bytes is not None, "the OTLP/HTTP exporter takes encoded requests"
        records = [SpanRecord(7, 9, 3, "execute_tool lookup", 1_000, 1_000, {"taskplane.tool.journal_hit": True}),
                   SpanRecord(7, 3, None, "invoke_workflow w", 900, 1_100, {}, ok=False, error="boom")]
        assert sink.export(records)
        assert [ExportTraceServiceRequest.FromString(b) for b in _Collector.bodies] == [sdk_request(sink, records)]
    finally:
        server.shutdown()
    assert OtlpSink(_Null())._send_bytes is None  # any other exporter: the SDK's path
