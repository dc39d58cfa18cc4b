"""The tool-call journal (invariant 2) and the records derived from events."""

from __future__ import annotations

from taskplane.contract.decider import Output
from taskplane.contract.messages import (
    Assignment,
    ClaimTask,
    CommandRejected,
    JournalEntry,
    RecordToolCall,
    ToolCallSucceeded,
    ToolOutcome,
    WorkItem,
)
from taskplane.contract.plan import ExecutionPolicy
from taskplane.contract.state import TaskStatus
from tests.processors._decider_helpers import RUN, Driver, document_pipeline, types


def started() -> Driver:
    run = Driver()
    run.submit()
    return run


def test_successful_call_is_journaled_once() -> None:
    run = started()
    run.claim("parser")
    assert run.record("parser", 0) == [
        ToolCallSucceeded(RUN, "parser", 1, "parser/document.extract/0", "document.extract", 0, '{"ok": true}')]
    [event] = run.record("parser", 0)
    assert isinstance(event, CommandRejected) and event.reason == "duplicate tool call"


def test_failed_call_may_be_retried_and_then_succeed() -> None:
    run = started()
    run.claim("parser")
    assert types(run.record("parser", 0, ok=False)) == ["ToolCallFailed"]
    assert types(run.record("parser", 0)) == ["ToolCallSucceeded"]
    assert run.state.journal["parser/document.extract/0"].ok


def test_a_late_failure_never_overwrites_a_success() -> None:
    run = started()
    run.claim("parser")
    run.record("parser", 0)
    assert types(run.record("parser", 0, ok=False)) == ["ToolCallFailed"]
    assert run.state.journal["parser/document.extract/0"].ok


def test_stale_holder_side_effect_is_still_recorded() -> None:
    # w1 lost its lease mid-call; its charge happened, so w2 must see it in the journal.
    run = started()
    run.claim("parser", "w1")
    run.advance(10_000)
    run.retry_until_ready("parser")
    run.claim("parser", "w2")
    assert types(run.record("parser", 0, worker="w1", epoch=1)) == ["ToolCallSucceeded"]
    assert run.task("parser").holder == "w2" and run.task("parser").status is TaskStatus.LEASED
    [event] = run.record("parser", 0, worker="w2")
    assert isinstance(event, CommandRejected) and event.reason == "duplicate tool call"


def test_a_record_from_an_epoch_never_granted_is_rejected() -> None:
    run = started()
    run.claim("parser")
    [event] = run.record("parser", 0, epoch=5)
    assert isinstance(event, CommandRejected) and event.reason == "unknown epoch 5 (latest 1)"


def test_without_idempotency_tracking_duplicates_are_recorded_and_not_handed_out() -> None:
    run = Driver(document_pipeline(ExecutionPolicy(idempotency_tracking=False)))
    run.submit()
    run.claim("parser")
    run.record("parser", 0)
    assert types(run.record("parser", 0)) == ["ToolCallSucceeded"]
    run.release("parser")
    run.claim("parser", "w2")
    assignment = run.runner.outputs[-1].value
    assert isinstance(assignment, Assignment) and assignment.journal == ()


def test_grant_sends_the_worker_everything_it_needs() -> None:
    run = started()
    run.claim("parser", "w1")
    run.record("parser", 1)
    run.record("parser", 0)
    run.complete("parser", "w1", output='{"text": "..."}')
    run.claim("summarizer", "w9")
    run.record("summarizer", 0, worker="w9")
    run.release("summarizer", "w9")
    run.claim("summarizer", "w7")
    inbox = run.runner.outputs[-1]
    assert (inbox.topic, inbox.key) == ("inbox", "w7")
    assert inbox.value == Assignment(
        "w7", RUN, "summarizer", 1, True, None, 2, run.now + 10_000, 10_000, "document-pipeline", "gpt-4",
        '{"path": "docs/"}', {"parser": '{"text": "..."}'},
        (JournalEntry("parser/document.extract/0", "document.extract", 0, '{"ok": true}'),
         JournalEntry("parser/document.extract/1", "document.extract", 1, '{"ok": true}'),
         JournalEntry("summarizer/text.summarize/0", "text.summarize", 0, '{"ok": true}')),
        run.plan.agent("summarizer").tools,  # the run's own tool policy travels with the grant
        plan_version="v1")  # and its plan's version (workers/speculation.py)


def test_rejected_claim_is_answered_on_the_inbox() -> None:
    run = started()
    run.claim("parser", "w1")
    run.send(ClaimTask(RUN, "parser", 1, "w2"))
    assert run.runner.outputs[-1] == Output("inbox", "w2", Assignment(
        "w2", RUN, "parser", 0, False, "already leased", 0, 0, 0, "document-pipeline", None, "", {}, ()))


def test_other_rejections_produce_no_records() -> None:
    run = started()
    count = len(run.runner.outputs)
    run.renew("parser", "w1", 3)
    assert len(run.runner.outputs) == count


def test_ready_task_is_offered_on_work() -> None:
    run = started()
    run.run_task("parser")
    work = [o for o in run.runner.outputs if o.topic == "work"]
    assert [o.key for o in work] == [f"{RUN}/parser", f"{RUN}/validator", f"{RUN}/summarizer"]
    assert work[1].value == WorkItem(RUN, "document-pipeline", "validator", 1)


def test_tool_outcomes_carry_the_tool_breaker_policy() -> None:
    """... and the call's key, which releases its permit in the tool governor."""
    run = started()
    run.claim("parser")
    run.record("parser", 0)
    run.record("parser", 1, ok=False)
    outcomes = [o for o in run.runner.outputs if o.topic == "tool-outcomes"]
    keys = [e.key for _, e in run.runner.log if type(e).__name__ in ("ToolCallSucceeded", "ToolCallFailed")]
    assert len(keys) == 2 and all(keys)
    assert outcomes == [
        Output("tool-outcomes", "document.extract",
               ToolOutcome("document.extract", True, 3, 30_000, RUN, None, keys[0])),
        Output("tool-outcomes", "document.extract",
               ToolOutcome("document.extract", False, 3, 30_000, RUN, "boom", keys[1])),
    ]


def test_undeclared_tool_gets_the_default_breaker_policy() -> None:
    run = started()
    run.claim("parser")
    run.send(RecordToolCall(RUN, "parser", "w1", 1, "k-http", "http.get", 7, False, None, "503"))
    outcome = run.runner.outputs[-1].value
    assert isinstance(outcome, ToolOutcome) and (outcome.tool, outcome.failure_threshold,
                                                 outcome.cooldown_ms) == ("http.get", 5, 60_000)

