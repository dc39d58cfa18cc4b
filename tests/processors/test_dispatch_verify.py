"""``taskplane verify --processor dispatcher``: a recorded dispatcher log re-decided by the
current decider gives the same events; a changed rule or a tampered event is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.scheduling import DispatchNotice, DispatchOffer, WorkReleased
from taskplane.processors.dispatch import fair
from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.processors.dispatch.verify import verify_dispatch
from taskplane.processors.orchestrator.verify import RawRecord, RecordedLog, write_fixture
from taskplane.streams.serde import SCHEMA_VERSION, Meta, Serde

SYSTEM = "sys"
SERDE = Serde()


def offer(run: str, tenant: str) -> DispatchOffer:
    return DispatchOffer(SYSTEM, run, "t", 1, tenant, 3, 1, 0, 30_000, 4, 60_000)


def recorded(commands: list[tuple[Any, int]]) -> RecordedLog:
    """The log the runtime would write for ``commands`` (decided one by one)."""
    r = InMemoryRunner.of(DispatchDecider())
    records: list[RawRecord] = []
    for index, (command, at) in enumerate(commands):
        cause = f"c{index}"
        meta = Meta(cause, SYSTEM, type(command).__name__, SCHEMA_VERSION, None, None, at)
        records.append(RawRecord("commands", 0, index, at, SYSTEM, SERDE.encode(command, meta)))
        for number, event in enumerate(r.handle(SYSTEM, command, at)):
            meta = Meta(f"{cause}/{number}", SYSTEM, type(event).__name__, SCHEMA_VERSION, cause, None, at)
            records.append(RawRecord("events", 0, len(records), at, SYSTEM, SERDE.encode(event, meta)))
    return RecordedLog(records)


def trickle() -> list[tuple[Any, int]]:
    """A flood of tenant a, and b's runs one at a time, each taken and done, with a's
    items taken meanwhile: the window's room kept for b decides what goes."""
    r = InMemoryRunner.of(DispatchDecider())
    commands: list[tuple[Any, int]] = []

    def send(command: Any, at: int) -> None:
        commands.append((command, at))
        r.handle(SYSTEM, command, at)

    for i in range(40):
        send(offer(f"a{i}", "a"), i)
    at = 100
    for round_ in range(6):
        send(offer(f"b{round_}", "b"), at)
        for item in sorted(r.states[SYSTEM].released.values(), key=lambda item: item.released_ms):
            if item.taken:
                continue
            at += 5
            send(DispatchNotice(SYSTEM, item.run_id, item.task, item.attempt, "taken"), at)
            if item.tenant == "b":
                send(DispatchNotice(SYSTEM, item.run_id, item.task, item.attempt, "done"), at)
    return commands


def test_the_same_decider_decides_the_same() -> None:
    commands = trickle()
    verdict = verify_dispatch(recorded(commands))
    assert not verdict.divergences
    assert verdict.total("decisions") == len(commands)


def test_a_changed_rule_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    log = recorded(trickle())
    monkeypatch.setattr(fair, "ACTIVE_MS", 0)  # no room kept for a trickling tenant
    first = verify_dispatch(log).first
    assert first is not None and first.key == SYSTEM
    assert isinstance(first.expected, WorkReleased) or isinstance(first.actual, WorkReleased)


def test_the_cli_verifies_a_dispatcher_fixture(tmp_path: Path) -> None:
    path = tmp_path / "dispatch.jsonl"
    write_fixture(path, recorded(trickle()))
    result = CliRunner().invoke(app, ["verify", str(path), "--processor", "dispatcher", "--json"])
    assert result.exit_code == 0, result.output
    assert '"diverged_runs": 0' in result.stdout
    refused = CliRunner().invoke(app, ["verify", str(path), "--processor", "scheduler"])
    assert refused.exit_code == 2 and "--processor" in refused.output
