"""``taskplane verify --processor cron|breaker`` on logs recorded as the runtime writes
them (commands, events caused by them, the changelog record of each changed key): the
same decider gives the same events and the changelog is their fold; a changed rule, a
tampered event or a tampered changelog record is named (exit 1), bad input exits 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.contract.breaker import BreakerOpened, BreakerTick
from taskplane.contract.cron import (
    ApplySchedules,
    CronTick,
    PauseSchedule,
    ResumeSchedule,
    ScheduledRunEnded,
    ScheduleSpec,
    SlotFired,
)
from taskplane.contract.decider import step
from taskplane.contract.messages import ToolOutcome
from taskplane.contract.permits import AcquirePermit, PermitGranted, PermitQueued
from taskplane.contract.replay import Given
from taskplane.processors.breaker import permits
from taskplane.processors.breaker.decider import BreakerDecider
from taskplane.processors.breaker.verify import verify_breaker
from taskplane.processors.cron import decider as cron_decider
from taskplane.processors.cron.app import CronHints
from taskplane.processors.cron.decider import CronDecider
from taskplane.processors.cron.verify import verify_cron
from taskplane.processors.recorded import RawRecord, RecordedLog, write_fixture
from taskplane.streams.batch import state_meta
from taskplane.streams.serde import SCHEMA_VERSION, Meta, Serde
from tests.processors._decider_helpers import document_pipeline

SERDE = Serde()
SYSTEM = "document-pipeline"
TOOL = "openai.chat"
T0 = 1_796_637_630_000  # 2026-12-07 10:00:30 UTC
SECOND, MINUTE = 1_000, 60_000


def recorded(decider: Any, hints: Callable[[], Any], commands: list[tuple[str, Any, int]]) -> RecordedLog:
    """What the runtime writes for ``commands`` (key "": a Tick, deciding every key due by
    then): each command, its events (caused by it) and each changed key's state."""
    states: dict[str, Any] = {}
    records: list[RawRecord] = []

    def add(topic: str, key: str, value: Any, meta: Meta, at: int) -> None:
        offset = sum(1 for r in records if r.topic == topic)
        records.append(RawRecord(topic, 0, offset, at, key, SERDE.encode(value, meta)))

    for index, (key, command, at) in enumerate(commands):
        cause = f"c{index}"
        add("commands", key, command, Meta(cause, key, type(command).__name__, SCHEMA_VERSION, None, None, at), at)
        keys = [key] if key else sorted(k for k, s in states.items()
                                        if (due := decider.next_deadline(s)) is not None and due <= at)
        for woken in keys:
            result = step(decider, states.get(woken), command, at, hints())
            assert result.failure is None, result.failure
            for number, event in enumerate(result.events):
                meta = Meta(f"{cause}/{woken}/{number}", woken, type(event).__name__, SCHEMA_VERSION, cause, None, at)
                add("events", woken, event, meta, at)
            if result.state != states.get(woken):
                states[woken] = result.state
                add("changelog", woken, decider.snapshot(result.state), state_meta(woken), at)
    return RecordedLog(records, with_changelog=True)


def cron_log() -> RecordedLog:
    plan = document_pipeline()
    every = ScheduleSpec("every-minute", "* * * * *", "UTC", '{"n": 1}', "allow", 5 * MINUTE)
    forbid = ScheduleSpec("two-minutes", "*/2 * * * *", "UTC", "null", "forbid")
    commands: list[tuple[str, Any, int]] = [(SYSTEM, ApplySchedules(SYSTEM, "v1", plan, (every, forbid)), T0)]
    at = T0
    for minute in range(1, 4):
        at = T0 + minute * MINUTE - 30 * SECOND + 5
        commands.append(("", CronTick(at), at))
    commands.append((SYSTEM, PauseSchedule(SYSTEM, "every-minute", "ops"), at + 1))
    commands.append((SYSTEM, ResumeSchedule(SYSTEM, "every-minute", "ops"), at + 2))
    ended = cron_decider.keyed_run_id(SYSTEM, cron_decider.slot_key("two-minutes", T0 + 90 * SECOND))
    commands.append((SYSTEM, ScheduledRunEnded(SYSTEM, "two-minutes", ended, "succeeded"), at + 3))
    at += 8 * MINUTE  # an outage: the missed slots fire or are skipped past the deadline
    commands.append(("", CronTick(at), at))
    return recorded(CronDecider(), CronHints, commands)


def ask(key: str, worker: str = "w1") -> AcquirePermit:
    return AcquirePermit(TOOL, key, 0, worker, f"run-{key}", "parser", 1, 60, MINUTE, 2, 5_000)


def outcome(key: str, ok: bool = True) -> ToolOutcome:
    return ToolOutcome(TOOL, ok, 2, 30_000, f"run-{key}", None if ok else "502", key)


def breaker_log() -> RecordedLog:
    """60/min with a bucket of 2 and 2 at once: requests queue, Ticks grant them as tokens
    come; two failures open the breaker, which denies the waiting ones."""
    commands: list[tuple[str, Any, int]] = [(TOOL, ask(k), T0 + i) for i, k in enumerate("abcde")]
    at = T0 + 10
    for key in "ab":
        at += 700
        commands.append((TOOL, outcome(key), at))
        commands.append(("", BreakerTick(at + 300), at + 300))
    at += 2 * SECOND
    commands += [("", BreakerTick(at), at), (TOOL, outcome("c", ok=False), at + 1),
                 (TOOL, outcome("d", ok=False), at + 2), (TOOL, ask("f", "w2"), at + 3),
                 ("", BreakerTick(at + 40 * SECOND), at + 40 * SECOND)]
    return recorded(BreakerDecider(), Given, commands)


def tampered(log: RecordedLog, kind: type, change: Callable[[Any], Any], topic: str = "events") -> RecordedLog:
    """``log`` with the last recorded ``kind`` on ``topic`` changed (an earlier event's
    change may be overwritten by a later one in the fold)."""
    records = list(log.records)
    for index, record in reversed(list(enumerate(records))):
        meta, value = SERDE.decode(record.value)
        if record.topic == topic and isinstance(value, kind):
            records[index] = replace(record, value=SERDE.encode(change(value), meta))
            return RecordedLog(records, with_changelog=log.with_changelog)
    raise AssertionError(f"no {kind.__name__} on {topic}")


def test_a_recorded_cron_log_verifies_the_same() -> None:
    log = cron_log()
    verdict = verify_cron(log)
    assert not verdict.divergences and not verdict.state_mismatches
    assert verdict.total("decisions") == sum(1 for r in log.records if r.topic == "commands")
    assert verdict.states_compared == 1
    events = [SERDE.decode(r.value)[1] for r in log.records if r.topic == "events"]
    assert sum(isinstance(e, SlotFired) for e in events) >= 4  # the scenario fires slots


def test_a_changed_cron_rule_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    log = cron_log()
    monkeypatch.setattr(cron_decider, "slot_key", lambda name, slot: f"cron2/{name}/{slot}")
    first = verify_cron(log).first
    assert first is not None and first.key == SYSTEM and isinstance(first.command.command, CronTick)
    assert isinstance(first.expected, SlotFired) and first.actual != first.expected


def test_a_tampered_cron_event_is_named_and_breaks_the_fold() -> None:
    verdict = verify_cron(tampered(cron_log(), SlotFired, lambda e: replace(e, slot_ms=e.slot_ms + 1)))
    assert verdict.first is not None and isinstance(verdict.first.expected, SlotFired)
    assert [m.key for m in verdict.state_mismatches] == [SYSTEM]


def test_a_recorded_breaker_log_verifies_the_same() -> None:
    log = breaker_log()
    verdict = verify_breaker(log)
    assert not verdict.divergences and not verdict.state_mismatches
    assert verdict.states_compared == 1
    events = [SERDE.decode(r.value)[1] for r in log.records if r.topic == "events"]
    assert any(isinstance(e, PermitQueued) for e in events) and any(isinstance(e, BreakerOpened) for e in events)
    assert sum(isinstance(e, PermitGranted) for e in events) >= 4


def test_a_changed_rate_rule_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    log = breaker_log()
    monkeypatch.setattr(permits, "burst", lambda state: 1)  # a bucket of one call, not two
    first = verify_breaker(log).first
    assert first is not None and first.key == TOOL


def test_a_tampered_changelog_record_is_a_state_mismatch() -> None:
    log = tampered(breaker_log(), object, lambda s: replace(s, permits_granted=s.permits_granted + 1), "changelog")
    verdict = verify_breaker(log)
    assert not verdict.divergences  # the decisions are the log's; the stored state is not their fold
    mismatch = verdict.state_mismatches[0]
    assert mismatch.key == TOOL and mismatch.stored != mismatch.folded


def test_the_cli_verifies_cron_and_breaker_fixtures(tmp_path: Path) -> None:
    runner = CliRunner()
    for processor, log in (("cron", cron_log()), ("breaker", breaker_log())):
        path = tmp_path / f"{processor}.jsonl"
        write_fixture(path, log)
        same = runner.invoke(app, ["verify", str(path), "--processor", processor, "--json"])
        assert same.exit_code == 0, same.output
        summary = json.loads(same.stdout)
        assert summary["diverged_keys"] == 0 and summary["state_mismatches"] == 0 and summary["states_compared"] == 1
        text = runner.invoke(app, ["verify", str(path), "--processor", processor])
        assert text.exit_code == 0 and "same:" in text.stdout and "0 diverged" in text.stdout
    bad = tampered(cron_log(), SlotFired, lambda e: replace(e, fired_ms=e.fired_ms - 1))
    write_fixture(path := tmp_path / "bad-cron.jsonl", bad)
    diverged = runner.invoke(app, ["verify", str(path), "--processor", "cron"])
    assert diverged.exit_code == 1, diverged.output
    assert "first divergence, system 'document-pipeline', schedules partition 0" in diverged.stdout
    assert "log time 2026-12-07T" in diverged.stdout and "DIVERGED" in diverged.stdout
    as_json = json.loads(runner.invoke(app, ["verify", str(path), "--processor", "cron", "--json"]).stdout)
    assert as_json["diverged_keys"] == 1 and as_json["first_divergence"]["key"] == SYSTEM
    assert as_json["first_divergence"]["at_ms"] is not None


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "breaker.jsonl"
    write_fixture(path, breaker_log())
    for args, says in ((["--processor", "breaker", "--system", "x"], "keyed by tool"),
                       (["--processor", "governor"], "--processor")):
        result = runner.invoke(app, ["verify", str(path), *args])
        assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    path.write_text('{"format": "taskplane-log/1"}\n{"topic": "changelog", "partition": 0}\n')
    result = runner.invoke(app, ["verify", str(path), "--processor", "breaker"])
    assert result.exit_code == 2 and "line 2: missing field 'offset'" in result.output
