"""``taskplane simulate`` / ``taskplane.testing.simulate``: the examples hold under every
fault, the naive charge tool is caught, shrunk and reproduced, built-in invariants catch
a broken journal, and bad input is one line and exit 2. A few seeds each (the big counts
are in ``bench.simulate``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from taskplane.cli import main
from taskplane.testing import simulate
from taskplane.workers.journal import Journal

ROOT = Path(__file__).resolve().parents[2]
PAYMENTS = ROOT / "examples" / "payment-processor"
DOCUMENTS = ROOT / "examples" / "document-pipeline"
NAIVE = str(Path(__file__).resolve().parent / "naive_payment_tools.py")
COUNTING = str(Path(__file__).resolve().parent / "counting_tools.py")


def test_the_payment_example_holds_under_every_fault() -> None:
    report = simulate(PAYMENTS / "system.yaml", str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl",
                      runs=40, seeds=3)
    assert report.ok, report.failure and report.failure.violations
    assert report.passed == 3 and report.runs_simulated == 120


def test_the_document_pipeline_holds_under_every_fault_and_without_faults_every_run_succeeds() -> None:
    report = simulate(DOCUMENTS / "system.yaml", str(DOCUMENTS / "tools.py"), DOCUMENTS / "runs.jsonl",
                      runs=10, seeds=2, keep_results=True)
    assert report.ok, report.failure and report.failure.violations
    calm = simulate(DOCUMENTS / "system.yaml", str(DOCUMENTS / "tools.py"), DOCUMENTS / "runs.jsonl",
                    runs=5, seed=7, faults="none", keep_results=True)
    result = calm.results[0]
    assert [run.status for run in result.runs] == ["succeeded"] * 5 and result.faults == []
    kinds = [e.kind for e in result.events_of(result.runs[0].run_id)]
    assert kinds[:3] == ["RunSubmitted", "TaskReady", "LeaseGranted"] and kinds[-1] == "RunSucceeded"
    assert kinds.count("TaskSucceeded") == 4


def test_dispatched_runs_hold_under_every_fault(tmp_path: Path) -> None:
    """Runs of a system with spec.scheduling all go through the dispatcher (docs/scheduling.md):
    under aborts, worker crashes and outages every one still ends and each charge runs once."""
    manifest = (PAYMENTS / "system.yaml").read_text().replace(
        "spec:\n", "spec:\n  scheduling: {tenants: {t0: {weight: 3}, t1: {maxConcurrent: 1}}, window: 2}\n", 1)
    assert "scheduling:" in manifest
    (tmp_path / "system.yaml").write_text(manifest)
    report = simulate(tmp_path / "system.yaml", str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl",
                      runs=30, seeds=3)
    assert report.ok, report.failure and report.failure.violations
    assert report.passed == 3


def test_the_naive_charge_is_caught_shrunk_and_its_case_reproduced() -> None:
    report = simulate(PAYMENTS / "system.yaml", NAIVE, PAYMENTS / "runs.jsonl", runs=100, seeds=20)
    assert not report.ok and report.failure is not None and report.minimal is not None
    assert report.failure.seed < 20
    assert {v.invariant for v in report.failure.violations} == {"one_charge_per_order"}
    minimal = report.minimal
    assert len(minimal.runs) < 100 and len(minimal.faults) <= len(report.failure.faults)
    assert f"--seed {report.failure.seed}" in report.minimal_command and "--only-runs" in report.minimal_command
    again = simulate(PAYMENTS / "system.yaml", NAIVE, PAYMENTS / "runs.jsonl", runs=100, seed=report.failure.seed,
                     only_runs=minimal.runs, only_faults=minimal.faults, shrink=False)
    assert again.failure is not None and again.failure.faults == minimal.faults


def test_a_seed_simulates_the_same_way_twice() -> None:
    def events(seed: int) -> list[tuple[int, str, str]]:
        report = simulate(PAYMENTS / "system.yaml", str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl",
                          runs=30, seed=seed, keep_results=True)
        return [(e.at_ms, e.run_id, repr(e.event)) for e in report.results[0].events]

    first = events(5)
    assert first == events(5)
    assert first != events(6)


def test_a_crashed_worker_runs_no_tool_after_its_crash_and_its_attempts_are_taken_over() -> None:
    report = simulate(PAYMENTS / "system.yaml", str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl",
                      runs=60, seeds=3, faults="crash=0.1", keep_results=True)
    assert report.ok, report.failure and report.failure.violations
    crashes = [result.crashes for result in report.results]
    assert all(crashes), "every seed has crashes at this rate"
    for result in report.results:
        late = [x for x in result.executions if x.worker_id in result.crashes and x.at_ms > result.crashes[x.worker_id]]
        assert late == []
        assert all(run.status in ("succeeded", "dead_lettered") for run in result.runs)


def test_the_users_module_is_imported_afresh_for_each_seed() -> None:
    report = simulate(PAYMENTS / "system.yaml", COUNTING, PAYMENTS / "runs.jsonl", runs=10, seeds=3, faults="crash")
    assert report.ok, report.failure and report.failure.violations


def test_a_journal_that_forgets_is_caught_by_the_built_in_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Journal, "lookup", lambda self, key: None)
    report = simulate(PAYMENTS / "system.yaml", str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl",
                      runs=100, seeds=10, faults="crash=0.1")
    assert report.failure is not None
    assert "no journaled tool call executed again" in {v.invariant for v in report.failure.violations}


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    """``taskplane simulate ARGS`` through the console script's ``main``: (exit code, out, err)."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["taskplane", "simulate", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        out, err = capsys.readouterr()
        return int(exited.value.code or 0), out, err

    return run


def test_the_cli_exits_1_with_the_reproducing_commands_and_json_for_ci(
        cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = cli("-f", str(PAYMENTS / "system.yaml"), "--module", NAIVE, "--inputs", str(PAYMENTS / "runs.jsonl"),
                "--runs", "100", "--seeds", "20", "--json")
    assert code == 1, err
    data = json.loads(out)
    assert data["ok"] is False and data["failure"]["minimal"]["trace"]
    assert data["failure"]["command"].startswith("taskplane simulate -f ")


@pytest.mark.parametrize(("args", "says"), [
    (["-f", "missing.yaml", "--module", NAIVE, "--input", "{}"], "manifest file not found"),
    (["-f", str(PAYMENTS / "system.yaml"), "--module", NAIVE, "--input", "{oops"], "--input: not JSON"),
    (["-f", str(PAYMENTS / "system.yaml"), "--module", NAIVE, "--input", "{}", "--faults", "meteor"],
     "unknown fault 'meteor'"),
    (["-f", str(PAYMENTS / "system.yaml"), "--module", "no/such/tools.py", "--input", "{}"], "no such file"),
    # A MemoryError and its traceback before; each flag is named on its own.
    (["-f", str(PAYMENTS / "system.yaml"), "--module", NAIVE, "--input", "{}", "--runs", "99999999999"],
     "--runs: must be 1..100000, got 99999999999"),
    (["-f", str(PAYMENTS / "system.yaml"), "--module", NAIVE, "--input", "{}", "--seeds", "0"],
     "--seeds: must be 1..1000000, got 0"),
    (["-f", str(PAYMENTS / "system.yaml"), "--module", NAIVE, "--input", "{}", "--concurrency", "-1"],
     "--concurrency: must be 1..10000, got -1"),
    (["-f", str(PAYMENTS / "system.yaml"), "--module", NAIVE, "--input", "NaN"], "--input: not JSON: NaN"),
    # A typo let no fault fire: silently another case than the one reproduced.
    (["-f", str(PAYMENTS / "system.yaml"), "--module", NAIVE, "--input", "{}", "--only-faults", "sloow:17/p/1"],
     "--only-faults: 'sloow:17/p/1' is not a fault id"),
])
def test_bad_input_is_one_line_and_exit_2(cli: Callable[..., tuple[int, str, str]], args: list[str],
                                          says: str) -> None:
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_breaker_that_opens_early_is_caught_by_the_built_in_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskplane.processors.breaker import decider as breaker

    opened = breaker._outcome

    def hasty(state: Any, outcome: Any, at_ms: int) -> Any:
        return opened(state, replace(outcome, failure_threshold=1), at_ms)  # the policy says 5

    monkeypatch.setattr(breaker, "_outcome", hasty)
    report = simulate(PAYMENTS / "system.yaml", str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl",
                      runs=30, seed=3, faults="tool-error=0.3", shrink=False)
    assert report.failure is not None
    assert "breaker transitions as specified" in {v.invariant for v in report.failure.violations}


BUDGETED = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: budgeted}
spec:
  agents:
    - {name: a, model: m, tools: [llm.step]}
    - {name: b, model: m, tools: [llm.step]}
    - {name: c, tools: [shell.exec]}
  execution: {leaseTimeout: 2s, maxRetries: 2}
  policy: {maxTokensPerRun: 200, blockedTools: [shell.exec]}
"""


def test_a_budget_stops_every_run_under_faults_and_a_blocked_tool_never_runs(tmp_path: Path) -> None:
    """The orchestrator's budget rule and the worker's checks in virtual time, with and
    without faults: runs end budget_exceeded, the blocked tool never runs."""
    manifest = tmp_path / "system.yaml"
    manifest.write_text(BUDGETED)
    inputs = tmp_path / "runs.jsonl"
    inputs.write_text("{}\n")
    tools = str(Path(__file__).resolve().parent / "budget_tools.py")
    report = simulate(manifest, tools, inputs, runs=12, seeds=3, keep_results=True)
    assert report.ok, report.failure and report.failure.violations
    for result in report.results:  # under faults a run may also stop on its dead letters
        assert not [e for e in result.executions if e.tool == "shell.exec"]
    assert any(run.reason == "budget_exceeded" for result in report.results for run in result.runs)
    calm = simulate(manifest, tools, inputs, runs=12, seed=3, faults="none", keep_results=True)
    result = calm.results[0]
    assert {run.reason for run in result.runs} == {"budget_exceeded"}
    counts = [len([e for e in result.executions if e.run_id == run.run_id and e.tool == "llm.step"])
              for run in result.runs]
    # Each attempt's own view alone stops it by 20 calls (40 in all); the stop notice
    # stops the other one within its latency. (The usage answer a real worker waits for,
    # which gives bench.governance its overshoot <= 1, is not simulated.)
    assert all(20 <= n <= 40 for n in counts) and sum(counts) / len(counts) <= 24, counts


LIMITED = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: payment-processor}
spec:
  agents:
    - name: payment-processor
      tools:
        - stripe.charge: {concurrency: 1, rateLimit: 60/min, timeout: 5s}
        - ledger.record
  execution: {leaseTimeout: 2s, maxRetries: 3}
"""


def test_a_limited_tool_waits_for_the_real_governor_under_every_fault(tmp_path: Path) -> None:
    manifest = tmp_path / "system.yaml"
    manifest.write_text(LIMITED)
    report = simulate(manifest, str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl", runs=20, seeds=3)
    assert report.ok, report.failure and report.failure.violations
    assert report.passed == 3


def test_a_governor_that_grants_past_the_cap_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskplane.processors.breaker import permits

    monkeypatch.setattr(permits, "can_grant", lambda state, at_ms: True)  # no limit at all
    manifest = tmp_path / "system.yaml"
    manifest.write_text(LIMITED)
    report = simulate(manifest, str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl", runs=20, seeds=1, faults="none")
    assert not report.ok and report.failure is not None
    assert any(v.invariant == "tool limits hold" for v in report.failure.violations)


def test_cron_slots_fire_once_each_under_every_fault_and_their_runs_end(tmp_path: Path) -> None:
    """spec.schedules run through the real cron decider in virtual time (docs/scheduling.md):
    every five minutes for 20 slots, under aborts (of the cron processor's transactions
    too), worker crashes and outages; each slot fires once and its run ends. (``allow``: with
    ``forbid`` a dead-lettered run, which stays open for a replay, skips every later slot.)"""
    from taskplane.contract.cron import SlotFired
    from taskplane.testing.simulation.cron import CRON_SLOTS

    manifest = (PAYMENTS / "system.yaml").read_text().replace("spec:\n", (
        "spec:\n  schedules:\n    - {name: sweep, cron: '*/5 * * * *', timeZone: Europe/Paris,\n"
        "       input: {amount: 500, currency: usd, customer: cus_cron}, concurrencyPolicy: allow}\n"), 1)
    (tmp_path / "system.yaml").write_text(manifest)
    report = simulate(tmp_path / "system.yaml", str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl",
                      runs=4, seeds=3, keep_results=True)
    assert report.ok, report.failure and report.failure.violations
    for result in report.results:
        fired = [r.event for r in result.cron_events if isinstance(r.event, SlotFired)]
        assert len(fired) == CRON_SLOTS and len({e.slot_ms for e in fired}) == CRON_SLOTS
        assert all(e.slot_ms % 300_000 == 0 for e in fired)
        scheduled = [run for run in result.runs if run.input == {"amount": 500, "currency": "usd",
                                                                  "customer": "cus_cron"}]
        assert len(scheduled) == CRON_SLOTS
        assert all(run.status in ("succeeded", "dead_lettered") for run in scheduled)


def test_long_work_reports_progress_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from taskplane.cli.simulate import Progress

    seen: list[tuple[int, bool]] = []
    report = simulate(PAYMENTS / "system.yaml", str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl", seeds=3,
                      faults="none", progress=lambda r: seen.append((r.passed, r.failure is not None)))
    assert report.ok and seen == [(1, False), (2, False), (3, False)]
    failing = simulate(PAYMENTS / "system.yaml", NAIVE, PAYMENTS / "runs.jsonl", runs=100, seeds=20,
                       progress=Progress(every_s=0))
    assert failing.failure is not None
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "1 of 20 seeds held (100 runs)..."
    assert lines[-1] == f"seed {failing.failure.seed} broke an invariant; shrinking it to a minimal case..."
