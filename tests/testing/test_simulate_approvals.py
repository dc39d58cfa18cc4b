"""Approvals in ``taskplane simulate``: a simulated person grants each request (signed
with the simulation's key, checked by the real decider); under every fault the gated
charge never runs before its grant, and a worker that skips the wait is caught by the
built-in invariant."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskplane.testing import simulate
from taskplane.workers.journal import Journal

PAYMENTS = Path(__file__).resolve().parents[2] / "examples" / "payment-processor"


@pytest.fixture
def gated(tmp_path: Path) -> Path:
    manifest = (PAYMENTS / "system.yaml").read_text().replace(
        "- stripe.charge\n", "- stripe.charge: {approval: required, operation: write}\n")
    assert "approval: required" in manifest
    path = tmp_path / "system.yaml"
    path.write_text(manifest)
    return path


def test_the_gated_charge_waits_for_its_grant_under_every_fault(gated: Path) -> None:
    report = simulate(gated, str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl", runs=20, seeds=3,
                      keep_results=True)
    assert report.ok, report.failure and report.failure.violations
    result = report.results[0]
    kinds = [e.kind for run in result.runs for e in result.events_of(run.run_id)]
    assert kinds.count("ApprovalGranted") >= 20
    assert {run.status for run in result.runs} <= {"succeeded", "failed", "dead_lettered"}


def test_a_worker_that_skips_the_wait_is_caught(gated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Journal, "granted", lambda self, key: True)
    report = simulate(gated, str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl", runs=10, seeds=2,
                      faults="none")
    assert report.failure is not None
    assert "no approval-required tool runs without a grant" in {v.invariant for v in report.failure.violations}
