"""Approvals on the real broker: a call waits for a person and holds no worker; a grant
through the client runs it exactly once even when the worker holding the resumed attempt
is SIGKILLed between the grant and the call; a forged decision decides nothing; a denial
and an expiry fail the task (docs/governance.md, "Approvals")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskplane.client import Client
from taskplane.contract import messages as m
from tests.e2e.e2e_pipeline import Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
KEY = "the person's key"
TOOLS = str(Path(__file__).resolve().parent / "e2e_approval_tools.py")
MANIFEST = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: paying}
spec:
  agents:
    - name: payer
      tools:
        - pay.charge: {approval: {required: true, ttl: TTL}, operation: write}
  execution: {leaseTimeout: 2s, maxRetries: 3, initialBackoff: 200ms, maxBackoffCap: 1s}
"""


@pytest.fixture
def approval_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requested before ``pipeline``: its orchestrator reads the key at start."""
    monkeypatch.setenv("TASKPLANE_APPROVAL_KEY", KEY)


@pytest.fixture
def files(pipeline: Pipeline, tmp_path: Path) -> dict[str, Path]:
    paths = {"charges": tmp_path / "charges.txt", "pause": tmp_path / "pause.flag"}
    paths["charges"].touch()
    pipeline.env["APPROVAL_CHARGES"] = str(paths["charges"])
    pipeline.env["APPROVAL_PAUSE"] = str(paths["pause"])
    return paths


@pytest.fixture
def client(pipeline: Pipeline) -> Iterator[Client]:
    with Client(str(pipeline.kafka["bootstrap.servers"]), topic_prefix=pipeline.topics.prefix) as made:
        yield made


def _submit(pipeline: Pipeline, ttl: str, amount: int = 5) -> str:
    plan = pipeline.define(MANIFEST.replace("TTL", ttl))
    run_id = pipeline.publisher.submit_run(plan, {"amount": amount})
    pipeline.publisher.flush()
    return run_id


def _of(pipeline: Pipeline, run_id: str, kind: type) -> list[Any]:
    return [e for e in pipeline.log.events(kind) if e.run_id == run_id]


def _requested(pipeline: Pipeline, run_id: str) -> m.ApprovalRequested:
    pipeline.wait(lambda log: _of(pipeline, run_id, m.ApprovalRequested), 45)
    (requested,) = _of(pipeline, run_id, m.ApprovalRequested)
    return requested


@pytest.mark.usefixtures("approval_key")
def test_a_granted_call_runs_exactly_once_across_a_kill_between_grant_and_call(
        pipeline: Pipeline, files: dict[str, Path], client: Client) -> None:
    files["pause"].touch()
    pipeline.define(MANIFEST.replace("TTL", "10m"))  # before its worker: it reads the definition at start
    first = pipeline.worker("w1", {"paying": TOOLS})
    run_id = _submit(pipeline, "10m")
    requested = _requested(pipeline, run_id)
    assert files["charges"].read_text() == ""  # nothing ran before a person said yes
    released = _of(pipeline, run_id, m.LeaseReleased)
    assert released and released[-1].epoch == requested.epoch  # the worker gave its lease back

    pending = client.approvals()
    assert [(a.approval_id, a.tool, a.status) for a in pending] == [(requested.approval_id, "pay.charge", "pending")]

    # A worker could write a DecideApproval to `commands`; without the key it decides nothing.
    forged = m.DecideApproval(run_id, requested.approval_id, True, "agent", int(time.time() * 1000), "", "00" * 32)
    pipeline.publisher.publish(forged)
    pipeline.publisher.flush()
    pipeline.wait(lambda log: [e for e in _of(pipeline, run_id, m.CommandRejected) if e.command == "DecideApproval"])
    assert not _of(pipeline, run_id, m.ApprovalGranted)

    granted = client.approve(requested.approval_id, who="ada", reason="invoice checked", key=KEY)
    assert (granted.status, granted.who, granted.decision_reason) == ("granted", "ada", "invoice checked")
    reached = files["pause"].with_suffix(".reached")
    pipeline.wait(lambda log: reached.exists(), 30)  # the resumed attempt holds the grant, not yet the call
    first.kill()
    files["pause"].unlink()
    pipeline.worker("w2", {"paying": TOOLS})
    pipeline.wait(lambda log: _of(pipeline, run_id, m.RunSucceeded), 60)
    assert files["charges"].read_text().split() == [requested.approval_id]  # exactly once, under its key
    assert client.approvals() == []


@pytest.mark.usefixtures("approval_key")
def test_a_denial_and_an_expiry_fail_their_tasks_and_run_nothing(
        pipeline: Pipeline, files: dict[str, Path], client: Client) -> None:
    pipeline.define(MANIFEST.replace("TTL", "10m"))  # before its worker: it reads the definition at start
    pipeline.worker("w1", {"paying": TOOLS})
    denied_run = _submit(pipeline, "10m", amount=1)
    expiring_run = _submit(pipeline, "2s", amount=2)
    denied = _requested(pipeline, denied_run)
    decision = client.deny(denied.approval_id, "wrong customer", who="ada", key=KEY)
    assert (decision.status, decision.decision_reason) == ("denied", "wrong customer")
    pipeline.wait(lambda log: _of(pipeline, denied_run, m.TaskDeadLettered)
                  and _of(pipeline, expiring_run, m.TaskDeadLettered), 45)
    assert _of(pipeline, denied_run, m.TaskDeadLettered)[0].error == "approval_denied"
    assert _of(pipeline, expiring_run, m.ApprovalExpired)
    assert _of(pipeline, expiring_run, m.TaskDeadLettered)[0].error == "approval_timeout"
    assert files["charges"].read_text() == ""
    assert {a.status for a in client.approvals(None)} == {"denied", "expired"}
