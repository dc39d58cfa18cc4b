"""Span records as the SDK's ReadableSpans: a span exported again by another tracer
process is the same span (a receiver keeps one copy of identical spans)."""

from __future__ import annotations

from typing import Any

import pytest

from taskplane.processors.tracer.spans import SpanRecord

pytest.importorskip("opentelemetry.sdk")
from taskplane.processors.tracer.export import OtlpSink  # noqa: E402


class _Null:
    def export(self, spans: Any) -> None:
        return None

    def shutdown(self) -> None:
        return None


SPAN = SpanRecord(7, 9, 3, "execute_tool lookup", 1_000, 1_000, {"taskplane.tool.journal_hit": True})


def test_two_sinks_make_the_same_span() -> None:
    first, second = OtlpSink(_Null()).readable([SPAN])[0], OtlpSink(_Null()).readable([SPAN])[0]
    assert "service.instance.id" not in first.resource.attributes, "no random instance id in the resource"
    assert first.to_json() == second.to_json()
    assert (first.context.trace_id, first.context.span_id, first.parent.span_id) == (7, 9, 3)


def test_a_zero_length_span_lasts_one_nanosecond() -> None:
    span = OtlpSink(_Null()).readable([SPAN])[0]
    assert span.end_time - span.start_time == 1  # receivers rewrite a zero duration (and its copies differ)
