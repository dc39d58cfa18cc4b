"""``taskplane simulate`` runs the cron processor (docs/scheduling.md, "Cron schedules"):
seeds sweeps of the three concurrency policies under every fault (the cron processor's
crashes, lost commits and redelivered submits among them) hold the cron invariants, and
the invariants catch a decider that keys a slot's run by anything but the slot, a run of
a paused schedule's slot, two runs of a ``forbid`` schedule at once and a due slot that
never fired."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from taskplane.contract.cron import ScheduleResumed, SlotFired
from taskplane.contract.messages import RunSubmitted
from taskplane.testing import simulate
from taskplane.testing.simulation import cron_checks
from taskplane.testing.simulation.invariants import check_builtin
from taskplane.testing.simulation.result import SimEvent, SimulationResult
from taskplane.testing.simulation.runner import Report, load_plan

ROOT = Path(__file__).resolve().parents[2]
PAYMENTS = ROOT / "examples" / "payment-processor"


def _manifest(tmp_path: Path, policy: str, cron: str = "*/5 * * * *", deadline: str = "2m") -> Path:
    text = (PAYMENTS / "system.yaml").read_text().replace("spec:\n", (
        f"spec:\n  schedules:\n    - {{name: sweep, cron: '{cron}', timeZone: Europe/Paris,\n"
        "       input: {amount: 500, currency: usd, customer: cus_cron},\n"
        f"       concurrencyPolicy: {policy}, startingDeadline: {deadline}}}\n"), 1)
    assert "startingDeadline" in text
    path = tmp_path / f"{policy}.yaml"
    path.write_text(text)
    return path


def _simulate(tmp_path: Path, policy: str, seeds: int, faults: str | None = None, shrink: bool = True) -> Report:
    return simulate(_manifest(tmp_path, policy), str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl",
                    runs=4, seeds=seeds, faults=faults, shrink=shrink, keep_results=True)


@pytest.mark.parametrize("policy", ["forbid", "allow", "replace"])
def test_cron_invariants_hold_over_a_seeds_sweep_under_every_fault(tmp_path: Path, policy: str) -> None:
    report = _simulate(tmp_path, policy, seeds=12)
    assert report.ok, report.failure and report.failure.violations
    faults = Counter(f.split(":")[0] for r in report.results for f in r.faults if "cron" in f)
    kinds = Counter(type(e.event).__name__ for r in report.results for e in r.cron_events)
    assert faults["crash"] > 0 and faults["duplicate"] > 0  # the processor died and restarted
    assert kinds["ScheduleResumed"] > 0 and kinds["SlotsSkipped"] > 0
    assert report.slots_fired == kinds["SlotFired"] > 12 * 10


def test_a_minutely_forbid_schedule_holds_under_heavy_faults(tmp_path: Path) -> None:
    """Slots a minute apart, 30 s of starting deadline, ten times the crashes and aborts.
    A run's end carries the time its worker sent it (skewed, or decided a second later
    after an aborted transaction), so a forbid skip decided before the end can look later
    by log time: seed 11 was a false violation until the invariants read the logs by
    position."""
    manifest = _manifest(tmp_path, "forbid", "* * * * *", "30s")
    report = simulate(manifest, str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl", runs=4, seeds=12,
                      faults="crash=0.1,abort=0.1,duplicate=0.2,outage,tool-error")
    assert report.ok, report.failure and report.failure.violations
    assert report.slots_fired > 12 * 5 and report.slots_skipped > 0


def test_lost_commits_fire_a_slot_again_as_the_same_run(tmp_path: Path) -> None:
    """A Tick's transaction that committed and lost its reply is decided again from the
    memory before it: the slot fires a second time under its key, the orchestrator
    refuses the second submit, and the invariants hold."""
    report = _simulate(tmp_path, "allow", seeds=3, faults="abort=0.3")
    assert report.ok, report.failure and report.failure.violations
    again = [(r.seed, slot) for r in report.results for slot, n in _fires(r).items() if n > 1]
    assert again


def _fires(result: SimulationResult) -> Counter[int]:
    return Counter(e.event.slot_ms for e in result.cron_events if isinstance(e.event, SlotFired))


def test_a_decider_that_keys_a_slots_run_otherwise_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskplane.processors.cron import decider

    monkeypatch.setattr(decider, "keyed_run_id", lambda system, key: uuid.uuid4().hex)  # a fresh id per fire
    report = _simulate(tmp_path, "allow", seeds=3, faults="abort=0.3", shrink=False)
    assert not report.ok and report.failure is not None
    messages = [v.message for v in report.failure.violations if v.invariant == cron_checks.ONE_RUN]
    assert any("fired as run(s)" in m for m in messages)


def _resumed_seed(tmp_path: Path, policy: str) -> SimulationResult:
    report = _simulate(tmp_path, policy, seeds=6, faults="none")
    assert report.ok, report.failure and report.failure.violations
    return next(r for r in report.results if any(isinstance(e.event, ScheduleResumed) for e in r.cron_events))


def test_tampered_logs_break_the_cron_invariants(tmp_path: Path) -> None:
    plan = load_plan(_manifest(tmp_path, "forbid"))
    result = _resumed_seed(tmp_path, "forbid")
    assert not check_builtin(plan, result)

    def names(tampered: SimulationResult) -> set[str]:
        return {v.invariant for v in check_builtin(plan, tampered)}

    resumed = next(e for e in result.cron_events if isinstance(e.event, ScheduleResumed))
    gap_slot = resumed.event.next_slot_ms - 300_000  # inside the pause: must not fire
    fired = next(e for e in result.cron_events if isinstance(e.event, SlotFired))
    ghost = SimEvent(resumed.at_ms, fired.run_id, replace(fired.event, slot_ms=gap_slot))
    assert cron_checks.PAUSED in names(replace(result, cron_events=[*result.cron_events, ghost]))

    dropped = [e for e in result.cron_events if not (isinstance(e.event, SlotFired) and e is fired)]
    assert cron_checks.DUE in names(replace(result, cron_events=dropped))

    submits = [e for e in result.events if isinstance(e.event, RunSubmitted) and e.event.idempotency_key]
    first, second = submits[0], submits[1]
    early = [e for e in result.events if e is not second]
    early.insert(early.index(first) + 1, second)  # submitted before the first one ended
    assert cron_checks.FORBID in names(replace(result, events=early))

    twice = [*result.events, SimEvent(second.at_ms + 5, second.run_id, second.event)]
    assert cron_checks.ONE_RUN in names(replace(result, events=twice))


def test_a_decider_whose_resume_does_not_resume_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resumed schedule stays paused in the decider's state: the slots owed after the
    resume never fire, and the simulated operator's final pause (by time, as nothing is
    counted any more) bounds what was owed."""
    from taskplane.processors.cron.decider import CronDecider

    evolve = CronDecider.evolve

    def stays_paused(self: CronDecider, state: Any, event: Any) -> Any:
        after = evolve(self, state, event)
        if isinstance(event, ScheduleResumed) and after is not None:
            return replace(after, schedules=tuple(replace(s, paused=True) for s in after.schedules))
        return after

    monkeypatch.setattr(CronDecider, "evolve", stays_paused)
    report = _simulate(tmp_path, "allow", seeds=4, faults="none", shrink=False)
    assert not report.ok and report.failure is not None
    assert {v.invariant for v in report.failure.violations} == {cron_checks.DUE}
    assert all("neither fired nor skipped" in v.message for v in report.failure.violations)


def test_a_forbid_decider_that_forgets_the_running_run_is_caught(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that dead-lettered stays open (for a replay): the next slot of a forbid
    schedule must wait. A decider that does not look at the running runs starts one."""
    from taskplane.processors.cron import decider

    slots = decider._slots
    monkeypatch.setattr(decider, "_slots", lambda state, schedule, due, now: slots(
        state, replace(schedule, active=()), due, now))
    report = _simulate(tmp_path, "forbid", seeds=12, shrink=False)
    assert not report.ok and report.failure is not None
    assert cron_checks.FORBID in {v.invariant for v in report.failure.violations}
