"""``taskplane verify`` over the frozen logs of every example (recorded from the real
stack by ``scripts/record_verify_logs.py``): the current orchestrator decides them the
same; an altered one is caught, and the first divergence is named. A decider change
that alters past decisions fails here: re-record only when the change is meant."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.contract import messages as m
from taskplane.processors.orchestrator import decider as decider_module
from taskplane.processors.orchestrator.verify import read_fixture, verify_log
from taskplane.streams.serde import Serde

LOGS = Path(__file__).parent / "fixtures" / "logs"
EXAMPLES = ("document-pipeline", "payment-processor")


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["verify", *args])


def events_of(name: str) -> Iterator[Any]:
    serde = Serde()
    for record in read_fixture(LOGS / f"{name}.jsonl").records:
        yield serde.decode(record.value)[1]


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_log_has_every_scenario(name: str) -> None:
    kinds = {type(value) for value in events_of(name)}
    assert {m.RetryScheduled, m.TaskDeadLettered, m.TaskReplayed, m.LeaseExpired, m.RunCancelled,
            m.CommandRejected} <= kinds
    grants = [e for e in events_of(name) if isinstance(e, m.RunSubmitted) and e.free_slots]
    assert grants, "no root grant from hints in the log"
    assert (LOGS / f"{name}.jsonl").stat().st_size < 100_000


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_current_orchestrator_decides_each_example_log_the_same(name: str) -> None:
    verdict = verify_log(read_fixture(LOGS / f"{name}.jsonl"))
    assert verdict.first is None, verdict.first
    assert verdict.total("decisions") >= verdict.total("commands") >= 40
    assert verdict.total("keys") == 7 and verdict.undecodable == 0  # the scenarios of the recorder


def test_the_cli_passes_the_whole_directory() -> None:
    result = run_cli(str(LOGS))
    assert result.exit_code == 0, result.output
    assert "same:" in result.output and "0 diverged" in result.output


def test_a_changed_backoff_is_named_as_the_first_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    original = decider_module.backoff_ms
    monkeypatch.setattr(decider_module, "backoff_ms", lambda *args: original(*args) + 1)
    result = run_cli(str(LOGS / "document-pipeline.jsonl"), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    first = report["first_divergence"]
    assert first["command"].startswith(("FailTask(", "Tick("))  # a failure, or a lease expiry by a Tick
    assert first["expected"].startswith("RetryScheduled(") and first["actual"].startswith("RetryScheduled(")
    assert report["diverged_runs"] >= 1


def test_a_changed_grant_rule_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    original = decider_module._submit
    # The altered rule: roots are never granted at submit, whatever the free slots.
    monkeypatch.setattr(decider_module, "_submit", lambda state, command, at_ms, plans, free_slots:
                        original(state, command, at_ms, plans, ()))
    result = run_cli(str(LOGS / "payment-processor.jsonl"))
    assert result.exit_code == 1, result.output
    assert "first divergence" in result.output
    assert "command:  SubmitRun(" in result.output
    assert "expected (recorded):   RunSubmitted(" in result.output and "free_slots=('w" in result.output
    assert "DIVERGED" in result.output


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file or directory"),
    ("", "empty"),
    ('{"format": "something-else"}\n', "line 1: not a taskplane-log/1 header"),
    ('{"format": "taskplane-log/1", "schemas": {}}\nnot json\n', "line 2: not JSON"),
    ('{"format": "taskplane-log/1", "schemas": {}}\n{"topic": "events"}\n', "line 2: missing field"),
    ('{"format": "taskplane-log/1", "schemas": {}}\n{"topic": "x", "partition": 0, "offset": 0, '
     '"timestamp": 0, "value": ""}\n', "line 2: topic 'x'"),
    ('{"format": "taskplane-log/1", "schemas": {}}\n', "no commands to re-decide"),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "log.jsonl"
    if content is not None:
        path.write_text(content)
    result = run_cli(str(path))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_system_with_nothing_in_the_log_is_bad_input_not_same() -> None:
    # It printed "same: 0 decisions ..." and exited 0: a misspelt --system passed a CI gate.
    result = run_cli(str(LOGS / "payment-processor.jsonl"), "--system", "payment-procesor")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "error: --system: nothing of system 'payment-procesor' in the log to verify"
    assert run_cli(str(LOGS / "payment-processor.jsonl"), "--system", "payment-processor").exit_code == 0
