"""The approval rules of the orchestrator decider (``processors/orchestrator/approvals.py``):
a request gives the lease back and the task waits holding no worker; only a signed
decision decides; a grant readies a new attempt that may run the call once; a denial or
an expiry fails the task without retry."""

from __future__ import annotations

from taskplane.contract.approvals import sign, signature_problem
from taskplane.contract.messages import (
    ApprovalRequested,
    Assignment,
    CommandRejected,
    CompleteTask,
    LeaseGranted,
    RequestApproval,
)
from taskplane.contract.state import TaskStatus
from taskplane.processors.orchestrator.approvals import granted_not_run
from taskplane.processors.orchestrator.outputs import outputs
from tests.processors._approval_helpers import (
    CALL,
    KEY,
    TTL_MS,
    approval_driver,
    approval_granted,
    ask,
    decide,
)
from tests.processors._decider_helpers import types


def _rejected(events: list) -> str:
    assert types(events) == ["CommandRejected"], events
    rejection = events[0]
    assert isinstance(rejection, CommandRejected)
    return rejection.reason


def test_a_request_gives_the_lease_back_and_the_task_waits_holding_no_worker() -> None:
    run = approval_driver()
    events = ask(run)
    assert types(events) == ["LeaseReleased", "ApprovalRequested"]
    requested = events[1]
    assert isinstance(requested, ApprovalRequested)
    assert (requested.approval_id, requested.tool, requested.ttl_ms) == (CALL, "database.store", TTL_MS)
    assert requested.expires_ms == requested.requested_ms + TTL_MS
    publisher = run.task("publisher")
    assert publisher.status is TaskStatus.AWAITING_APPROVAL
    assert (publisher.holder, publisher.lease_expires_ms) == (None, None)
    assert run.runner.decider.next_deadline(run.state) == requested.expires_ms
    assert run.state.approvals[CALL].status == "pending"
    # Offered once (before the claim), not again while it waits: no worker takes it up.
    assert len([o for o in run.runner.outputs if o.topic == "work" and o.key.endswith("/publisher")]) == 1


def test_only_the_lease_holder_at_its_epoch_may_ask() -> None:
    run = approval_driver()
    run.submit()
    for task in ("parser", "validator", "summarizer"):
        run.run_task(task)
    run.claim("publisher", "w1")
    epoch = run.task("publisher").epoch
    stale = RequestApproval(run.run_id, "publisher", "w1", epoch - 1, CALL, "database.store", 0, "{}")
    assert "stale epoch" in _rejected(run.send(stale))
    other = RequestApproval(run.run_id, "publisher", "w9", epoch, CALL, "database.store", 0, "{}")
    assert "not the lease holder" in _rejected(run.send(other))
    assert run.task("publisher").status is TaskStatus.LEASED


def test_a_tool_without_approval_cannot_be_parked() -> None:
    run = approval_driver()
    run.submit()
    run.claim("parser")
    command = RequestApproval(run.run_id, "parser", "w1", run.task("parser").epoch, "k", "document.extract", 0, "{}")
    assert "does not require approval" in _rejected(run.send(command))


def test_a_grant_readies_a_new_attempt_whose_grant_carries_the_call_until_it_ran() -> None:
    run = approval_driver()
    ask(run)
    attempt = run.task("publisher").attempt
    events = decide(run, True)
    assert types(events) == ["ApprovalGranted", "TaskReady"]
    assert events[0].who == "ada" and events[1].attempt == attempt + 1
    assert run.task("publisher").status is TaskStatus.READY
    assert run.task("publisher").failures == 0  # waiting for a person burns no retry
    run.claim("publisher", "w2")
    granted = [o.value for o in run.runner.outputs if isinstance(o.value, Assignment) and o.value.granted]
    assert granted[-1].granted_approvals == (CALL,)
    run.record("publisher", 0, worker="w2", key=CALL)
    assert granted_not_run(run.state, "publisher") == ()  # ran once: a later attempt reads the journal
    run.complete("publisher", "w2")
    assert run.state.status.value == "succeeded"


def test_a_denial_fails_the_task_without_retry() -> None:
    run = approval_driver()
    ask(run)
    events = decide(run, False, reason="not today")
    assert types(events) == ["ApprovalDenied", "AttemptFailed", "TaskDeadLettered"]
    assert events[1].error == "approval_denied" and events[1].kind.value == "non_retryable"
    assert run.state.approvals[CALL].status == "denied"
    assert run.state.approvals[CALL].decision_reason == "not today"


def test_an_expired_request_fails_the_task_approval_timeout() -> None:
    run = approval_driver()
    ask(run)
    assert run.advance(TTL_MS - 1) == []
    events = run.advance(1)
    assert types(events) == ["ApprovalExpired", "AttemptFailed", "TaskDeadLettered"]
    assert events[1].error == "approval_timeout"
    assert run.runner.decider.next_deadline(run.state) is None


def test_a_decision_arriving_after_the_ttl_expires_it_instead() -> None:
    run = approval_driver()
    ask(run)
    run.now += TTL_MS  # no tick came in between
    events = decide(run, True)
    assert types(events)[0] == "ApprovalExpired"
    assert "ApprovalGranted" not in types(events)


def test_a_decision_is_made_once() -> None:
    run = approval_driver()
    ask(run)
    decide(run, True)
    assert "already granted" in _rejected(decide(run, False))
    assert "unknown approval" in _rejected(decide(run, True, approval_id="nope"))


def test_a_denied_call_may_be_asked_again_after_a_replay() -> None:
    run = approval_driver()
    ask(run)
    decide(run, False)
    run.replay("publisher")
    events = ask(run)
    assert types(events) == ["LeaseReleased", "ApprovalRequested"]


def test_a_cancelled_run_leaves_no_task_awaiting() -> None:
    run = approval_driver()
    ask(run)
    run.cancel()
    assert run.task("publisher").status is TaskStatus.CANCELLED
    assert run.runner.decider.next_deadline(run.state) is None


def test_the_state_is_the_fold_of_the_log_and_survives_a_restart() -> None:
    run = approval_granted()
    folded = None
    for _key, event in run.runner.log:
        folded = run.runner.decider.evolve(folded, event)
    assert folded == run.state
    run.runner.restart()
    assert run.state == folded
    assert not run.runner.failures


def test_a_granted_lease_carries_nothing_for_runs_without_approvals() -> None:
    run = approval_driver()
    run.submit()
    events = run.claim("parser")
    granted = [e for e in events if isinstance(e, LeaseGranted)]
    assignment = outputs(run.state, granted[0])[0].value
    assert isinstance(assignment, Assignment) and assignment.granted_approvals == ()


# ------------------------------------------------------------ only a person decides


def test_unsigned_forged_or_tampered_decisions_decide_nothing() -> None:
    run = approval_driver()
    ask(run)
    assert "unsigned" in _rejected(decide(run, True, signature=""))
    assert "bad signature" in _rejected(decide(run, True, key=b"a worker's guess"))
    flipped = sign(KEY, CALL, False, "ada", run.now)  # signed as a denial, sent as a grant
    assert "bad signature" in _rejected(decide(run, True, signature=flipped))
    other_person = sign(KEY, CALL, True, "mallory", run.now)
    assert "bad signature" in _rejected(decide(run, True, signature=other_person))  # who is "ada"
    other_call = sign(KEY, "another-call", True, "ada", run.now)
    assert "bad signature" in _rejected(decide(run, True, signature=other_call))
    assert run.task("publisher").status is TaskStatus.AWAITING_APPROVAL
    assert run.state.approvals[CALL].status == "pending"


def test_without_a_key_the_orchestrator_fails_closed() -> None:
    run = approval_driver(key=None)
    ask(run)
    reason = _rejected(decide(run, True, key=KEY))
    assert "fail closed" in reason and "TASKPLANE_APPROVAL_KEY" in reason
    assert run.state.approvals[CALL].status == "pending"


def test_an_agent_saying_approved_completes_nothing_while_it_waits() -> None:
    """The known failure: a model wrote ``{approved: true}`` itself. The worker that asked
    no longer holds the lease, so nothing it sends moves the task, let alone decides."""
    run = approval_driver()
    ask(run)
    epoch = run.task("publisher").epoch
    completed = run.send(CompleteTask(run.run_id, "publisher", "w1", epoch, '{"approved": true}'))
    assert "not leased" in _rejected(completed)
    assert "fail closed" not in _rejected(decide(run, True, who="w1", signature='{"approved": true}'))
    assert run.state.approvals[CALL].status == "pending"
    assert run.task("publisher").status is TaskStatus.AWAITING_APPROVAL


def test_signatures_bind_every_part() -> None:
    good = sign(KEY, "id", True, "ada", 5)
    assert signature_problem(KEY, "id", True, "ada", 5, good) is None
    for args in (("id", True, "ada", 6), ("id", False, "ada", 5), ("id", True, "adb", 5), ("ie", True, "ada", 5)):
        assert signature_problem(KEY, *args, good) is not None
    assert signature_problem(KEY, "id", True, " ", 5, sign(KEY, "id", True, " ", 5)) is not None  # nobody
