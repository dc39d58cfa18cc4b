"""The tracer on the real broker: spans exported as their attempts close, and a
restarted tracer neither re-exports nor loses a span (it refolds open runs silently)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from taskplane.contract.messages import Event
from taskplane.processors.tracer.app import Tracer, TracerSettings
from taskplane.processors.tracer.export import OtlpSink
from taskplane.streams.serde import Serde, new_meta
from taskplane.streams.topics import Topics, catalog, ensure_topics
from tests.processors.tracer.test_spans import _fold, _log

pytestmark = pytest.mark.kafka
export = pytest.importorskip("opentelemetry.sdk.trace.export")


class _Received(export.SpanExporter):  # type: ignore[misc,name-defined]
    """What an OTLP receiver would have taken, kept across tracer restarts."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    def export(self, spans: Any) -> Any:
        self.spans.extend(spans)
        return export.SpanExportResult.SUCCESS

    def get_finished_spans(self) -> list[Any]:
        return list(self.spans)


def _produce(kafka: dict[str, Any], topic: str, log: list[tuple[Event, int]]) -> None:
    producer, serde = Producer(kafka), Serde()
    for event, at_ms in log:
        run_id = event.run_id  # type: ignore[union-attr]
        meta = new_meta(run_id, type(event).__name__, at_ms)
        producer.produce(topic, serde.encode(event, meta), run_id.encode(), timestamp=at_ms)
    assert producer.flush(30) == 0


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _Running:
    def __init__(self, kafka: dict[str, Any], topics: Topics, exporter: Any) -> None:
        settings = TracerSettings(instance_id=f"{topics.prefix}-tracer", commit_interval_ms=50, max_batch_ms=50)
        self.tracer = Tracer(kafka, topics, settings, sink=OtlpSink(exporter))
        self.thread = threading.Thread(target=self.tracer.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.tracer.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_a_restarted_tracer_exports_each_span_once(kafka_config: dict[str, Any], unique_prefix: str) -> None:
    kafka = {**kafka_config, "log_level": 3}
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(kafka), topics, catalog(2, 1))
    log = _log()
    expected = _fold(log)
    # Cut after the parser's second attempt closed: the run stays open across the restart.
    cut = next(i for i, (event, _) in enumerate(log) if type(event).__name__ == "TaskSucceeded") + 1
    closed_before = len(_fold(log[:cut]))
    assert 0 < closed_before < len(expected)

    exporter = _Received()
    first = _Running(kafka, topics, exporter)
    _produce(kafka, topics.events, log[:cut])
    _until(lambda: len(exporter.get_finished_spans()) >= closed_before, "the first spans")
    time.sleep(0.2)  # a commit interval: the offsets behind them are committed
    first.stop()
    assert len(exporter.get_finished_spans()) == closed_before, "a span is exported when it closes"

    second = _Running(kafka, topics, exporter)
    _produce(kafka, topics.events, log[cut:])
    _until(lambda: len(exporter.get_finished_spans()) >= len(expected), "every span")
    time.sleep(0.5)  # nothing more comes
    second.stop()

    spans = exporter.get_finished_spans()
    ids = [(s.context.trace_id, s.context.span_id) for s in spans]
    assert len(ids) == len(set(ids)) == len(expected), "no duplicate, none missing"
    assert set(ids) == {(s.trace_id, s.span_id) for s in expected}
    root = next(s for s in spans if s.parent is None)
    parents = {s.context.span_id for s in spans}
    assert all(s.parent.span_id in parents for s in spans if s is not root)
    tool = next(s for s in spans if s.name == "execute_tool document.extract"
                and s.attributes["taskplane.tool.journal_hit"])
    assert tool.attributes["gen_ai.tool.call.id"] and tool.end_time - tool.start_time == 1  # zero length, 1 ns
