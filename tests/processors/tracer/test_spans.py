"""The tracer's fold: a run's events → its span tree, the same on every fold."""

from __future__ import annotations

from dataclasses import replace

from taskplane.contract.messages import Event, RunSubmitted
from taskplane.contract.trace_ids import attempt_span_id, run_span_id, trace_id, traceparent
from taskplane.processors.tracer.spans import SpanRecord, TraceFold
from tests.processors._decider_helpers import RUN, Driver


def _log() -> list[tuple[Event, int]]:
    """A document-pipeline run with a retried parser (its first tool call answered from
    the journal on the retry), an expired publisher lease, then success."""
    driver = Driver()
    log: list[tuple[Event, int]] = []

    def step(events: list[Event], ms: int = 10) -> None:
        log.extend((event, driver.now) for event in events)
        driver.now += ms

    # RunSubmitted names its plan; the tracer's wiring resolves it (for the models)
    step([replace(e, plan=driver.plan) if isinstance(e, RunSubmitted) else e for e in driver.submit()])
    step(driver.claim("parser"))
    step(driver.record("parser", 0))
    step(driver.fail("parser"))
    driver.retry_until_ready("parser")
    log.extend((event, driver.now) for event in driver.runner.advance(driver.now))
    step(driver.claim("parser"))
    step(driver.record("parser", 1))
    step(driver.complete("parser"))
    for name in ("validator", "summarizer"):
        step(driver.claim(name))
        step(driver.record(name, 0))
        step(driver.complete(name))
    step(driver.claim("publisher"))
    log.extend((event, driver.now) for event in driver.advance(driver.plan.execution.lease_timeout_ms + 1))
    driver.retry_until_ready("publisher")
    log.extend((event, driver.now) for event in driver.runner.advance(driver.now))
    step(driver.claim("publisher", "w2"))
    step(driver.complete("publisher", "w2"))
    return log


def _fold(log: list[tuple[Event, int]]) -> list[SpanRecord]:
    fold = TraceFold()
    return [span for event, at_ms in log for span in fold.apply(event, at_ms)]


def test_span_tree_of_a_retried_run() -> None:
    spans = _fold(_log())
    by_id = {span.span_id: span for span in spans}
    assert len(by_id) == len(spans), "span ids are unique"
    assert {span.trace_id for span in spans} == {trace_id(RUN)}
    root = by_id[run_span_id(RUN)]
    assert root.parent_id is None and root.name == "invoke_workflow document-pipeline" and root.ok
    assert all(span.parent_id in by_id for span in spans if span is not root), "no orphan"

    attempts = sorted((s.attributes["gen_ai.agent.name"], s.attributes["taskplane.attempt"], s.ok)
                      for s in spans if s.name.startswith("invoke_agent "))
    assert attempts == [("parser", 1, False), ("parser", 2, True), ("publisher", 1, False),
                        ("publisher", 2, True), ("summarizer", 1, True), ("validator", 1, True)]
    expired = next(s for s in spans if s.name == "invoke_agent publisher" and not s.ok)
    assert expired.attributes["error.type"] == "lease_expired"
    assert [e.name for e in expired.events] == ["lease_expired"]

    parser_2 = next(s for s in spans if s.name == "invoke_agent parser" and s.ok)
    tools = sorted((s.attributes["taskplane.tool.call_index"], s.attributes["taskplane.tool.journal_hit"])
                   for s in spans if s.parent_id == parser_2.span_id)
    assert tools == [(0, True), (1, False)], "the retry's call 0 was answered from the journal"
    assert parser_2.span_id == attempt_span_id(RUN, "parser", 2, 2)
    assert all(s.attributes["gen_ai.request.model"] == "gpt-4" for s in spans if s.name.startswith("invoke_agent"))

    backoffs = [s for s in spans if s.name.startswith("backoff ")]
    assert {s.name for s in backoffs} == {"backoff parser", "backoff publisher"}
    assert all(s.end_ms > s.start_ms and s.parent_id == root.span_id for s in backoffs)
    assert all(root.start_ms <= s.start_ms <= s.end_ms <= root.end_ms for s in spans if s is not root)


def test_a_refold_gives_the_same_spans() -> None:
    log = _log()
    assert _fold(log) == _fold(log)


def test_spans_close_with_their_attempt_not_the_run() -> None:
    fold = TraceFold()
    closed_at: dict[str, int] = {}
    for index, (event, at_ms) in enumerate(_log()):
        for span in fold.apply(event, at_ms):
            closed_at.setdefault(span.name, index)
    assert closed_at["invoke_agent parser"] < closed_at["invoke_workflow document-pipeline"]
    assert closed_at["execute_tool document.extract"] < closed_at["invoke_agent parser"]


def test_a_dead_letter_is_an_error_span_and_a_run_event() -> None:
    driver = Driver()
    log: list[tuple[Event, int]] = [(e, driver.now) for e in driver.submit()]
    for _ in range(driver.plan.execution.max_retries):
        log += [(e, driver.now) for e in driver.claim("parser")]
        log += [(e, driver.now) for e in driver.fail("parser")]
        if driver.task("parser").retry_due_ms is not None and driver.task("parser").status.value == "backoff":
            driver.retry_until_ready("parser")
            log += [(e, driver.now) for e in driver.runner.advance(driver.now)]
    log += [(e, driver.now) for e in driver.cancel("given up")]
    spans = _fold(log)
    dead = [s for s in spans if s.name == "dead_letter parser"]
    assert len(dead) == 1 and not dead[0].ok and dead[0].error == "boom"
    root = next(s for s in spans if s.parent_id is None)
    assert not root.ok and "dead_letter" in [e.name for e in root.events]


def test_traceparent_names_the_attempt_span() -> None:
    header = traceparent(RUN, "parser", 2, 2)
    version, trace, span, flags = header.split("-")
    assert (version, flags) == ("00", "01")
    assert int(trace, 16) == trace_id(RUN) and int(span, 16) == attempt_span_id(RUN, "parser", 2, 2)


def test_an_approval_wait_is_a_span_with_its_verdict() -> None:
    from taskplane.contract.messages import (
        ApprovalDenied,
        ApprovalExpired,
        ApprovalGranted,
        ApprovalRequested,
        RunFailed,
    )
    from taskplane.contract.trace_ids import span_id

    plan = Driver().plan
    fold = TraceFold()
    fold.apply(RunSubmitted(RUN, plan, "{}", 1_000), 1_000)

    def asked(key: str, at_ms: int) -> ApprovalRequested:
        return ApprovalRequested(RUN, "publisher", key, "mail.send", 0, '{"to": "x"}', "", 600_000,
                                 at_ms, at_ms + 600_000, 1, 1)

    spans = []
    for key, decided in (("k1", ApprovalGranted(RUN, "publisher", "k1", "ana", 1_400, "looks right", 1_500)),
                         ("k2", ApprovalDenied(RUN, "publisher", "k2", "bo", 2_400, "wrong customer", 2_500)),
                         ("k3", ApprovalExpired(RUN, "publisher", "k3", 3_500))):
        start = {"k1": 1_100, "k2": 2_100, "k3": 3_100}[key]
        assert fold.apply(asked(key, start), start) == []
        spans += fold.apply(decided, decided.at_ms)
    assert fold.apply(ApprovalGranted(RUN, "publisher", "k1", "ana", 1, "", 4_000), 4_000) == []  # decided once
    spans += fold.apply(RunFailed(RUN, "approval_timeout", 3_600), 3_600)
    granted, denied, expired, root = spans
    assert [s.name for s in (granted, denied, expired)] == ["approval mail.send"] * 3
    assert all(s.parent_id == root.span_id == run_span_id(RUN) for s in (granted, denied, expired))
    assert (granted.start_ms, granted.end_ms, granted.ok) == (1_100, 1_500, True)
    assert granted.attributes["taskplane.approval.who"] == "ana"
    assert granted.span_id == span_id(RUN, "publisher", "approval", "k1")
    assert (denied.ok, denied.error, denied.attributes["error.type"]) == (False, "wrong customer", "approval_denied")
    assert (expired.error, expired.attributes["taskplane.approval.verdict"]) == ("approval_timeout", "expired")


def test_reported_usage_is_on_the_tool_the_attempt_and_the_run() -> None:
    from taskplane.contract.governance import Usage
    from taskplane.contract.messages import (
        LeaseGranted,
        RunSucceeded,
        TaskSucceeded,
        ToolCallSucceeded,
    )

    fold = TraceFold()
    fold.apply(RunSubmitted(RUN, Driver().plan, "{}", 1_000), 1_000)
    fold.apply(LeaseGranted(RUN, "parser", 1, "w1", 1, 9_000), 1_010)
    tool = fold.apply(ToolCallSucceeded(RUN, "parser", 1, "k", "llm.chat", 0, "{}",
                                        (Usage("gpt-4", 120, 1_500),)), 1_020)[0]
    attempt = fold.apply(TaskSucceeded(RUN, "parser", 1, 1, "{}", (Usage("", 30, 0), Usage("gpt-4", 0, 250_000))),
                         1_030)[-1]
    run = fold.apply(RunSucceeded(RUN, 1_040), 1_040)[0]
    assert (tool.attributes["taskplane.usage.tokens"], tool.attributes["taskplane.usage.cost"]) == (120, "0.0015")
    assert tool.attributes["gen_ai.response.model"] == "gpt-4"
    assert (attempt.attributes["taskplane.usage.tokens"], attempt.attributes["taskplane.usage.cost"]) == (30, "0.25")
    assert (run.attributes["taskplane.usage.tokens"], run.attributes["taskplane.usage.cost"]) == (150, "0.2515")
