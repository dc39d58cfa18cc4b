"""One fold of task status: the orchestrator's ``evolve``, the shared fold
(``contract/status.py``), the read model (the projector's SQL on a real Postgres) and
the client's ``RunView`` must give every task and the run the same status word after
any log the decider writes.

``StatusFoldContract`` holds the scenarios; each fold is one subclass that says how it
folds a log (eventsourcing's one abstract test class per recorder). The expected
statuses are those of the state the decider itself decided with.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from taskplane.client._run_view import RunView, from_record
from taskplane.contract.messages import Event, RunForgotten, RunRecord, RunSubmitted, SubmitRun
from taskplane.contract.state import RunState, TaskStatus
from taskplane.contract.status import statuses_of
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.run_index import run_record
from taskplane.processors.orchestrator.verify import _serde
from taskplane.processors.orchestrator.verify import read_fixture as read_recorded
from taskplane.processors.projector.project import statements
from taskplane.processors.projector.schema import connect, migrate
from tests.contract._status_logs import SCENARIOS, Log, random_logs, recorded
from tests.processors._decider_codec import read_fixture

FIXTURES = [*(Path(__file__).parents[1] / "processors" / "fixtures").glob("*_log*.json")]
# The frozen logs ``taskplane verify`` re-decides: each example recorded on the real stack.
RECORDED = sorted((Path(__file__).parents[1] / "processors" / "fixtures" / "logs").glob("*.jsonl"))


class Folded(NamedTuple):
    run: str
    tasks: dict[str, str]
    blocked_by: dict[str, str]  # blocked tasks only


def expected(state: RunState) -> Folded:
    return Folded(state.status.value, {name: task.status.value for name, task in state.tasks.items()},
                  {name: task.blocked_by or "" for name, task in state.tasks.items()
                   if task.status is TaskStatus.BLOCKED})


def fixture_logs() -> Iterator[Log]:
    """The stored replay fixtures: each run that is not retired, from its last submit."""
    for path in FIXTURES:
        log, states = read_fixture(path)
        for key, state in states.items():
            if state is None or state.retired_ms is not None:
                continue
            events = [event for k, event in log if k == key]
            forgotten = [i for i, event in enumerate(events) if isinstance(event, RunForgotten)]
            start = forgotten[-1] + 1 if forgotten else 0
            yield Log(f"{path.name}:{key}", state.plan, tuple(events[start:]), state)


def recorded_logs() -> Iterator[Log]:
    """The examples' frozen logs (``tests/processors/fixtures/logs``): each run's events as
    the orchestrator wrote them on the broker, folded by the decider for the expectation."""
    for path in RECORDED:
        recorded_log = read_recorded(path)
        serde = _serde(recorded_log.schemas)
        decider = OrchestratorDecider()
        events: dict[str, list[Any]] = {}
        for record in sorted(recorded_log.records, key=lambda r: (r.topic, r.partition, r.offset)):
            meta, value = serde.decode(record.value)
            if record.topic == "commands":
                if isinstance(value, SubmitRun):
                    decider.plans.add(value.plan)
            elif isinstance(value, Event):
                events.setdefault(record.key or meta.key, []).append(value)
        for key, run_events in events.items():
            state: RunState | None = None
            for event in run_events:
                state = decider.evolve(state, event)
            if state is None or state.retired_ms is not None or not state.plan.agents:
                continue
            yield Log(f"{path.name}:{key}", state.plan, tuple(run_events), state)


class StatusFoldContract:
    """Scenarios every fold of task status must pass. ``fold`` is the adapter."""

    def fold(self, log: Log) -> Folded:
        raise NotImplementedError

    def check(self, log: Log) -> None:
        assert self.fold(log) == expected(log.state), log.name

    @pytest.mark.parametrize("name", SCENARIOS)
    def test_scenario(self, name: str) -> None:
        self.check(recorded(name, SCENARIOS[name]()))

    def test_cancel_after_a_failure_cancels_every_unfinished_task(self) -> None:
        log = recorded("cancel after a failure", SCENARIOS["cancel after a failure"]())
        assert self.fold(log) == Folded("cancelled", dict.fromkeys(
            ("parser", "validator", "summarizer", "publisher"), "cancelled"), {})

    def test_replaying_one_of_two_dead_letters_leaves_downstream_blocked_by_the_other(self) -> None:
        log = recorded("blocked downstream", SCENARIOS["blocked downstream"]())
        assert self.fold(log) == Folded("running", {
            "parser": "succeeded", "validator": "ready", "summarizer": "dead_lettered", "publisher": "blocked",
        }, {"publisher": "summarizer"})

    def test_a_failed_run_keeps_successes_and_fails_the_rest(self) -> None:
        log = recorded("failed", SCENARIOS["run failed without dead letters"]())
        assert self.fold(log) == Folded("failed", {
            "parser": "succeeded", "validator": "failed", "summarizer": "failed", "publisher": "failed"}, {})

    @pytest.mark.parametrize("log", list(fixture_logs()), ids=lambda log: log.name)
    def test_stored_fixture_logs(self, log: Log) -> None:
        self.check(log)

    @pytest.mark.parametrize("log", list(recorded_logs()), ids=lambda log: log.name)
    def test_recorded_example_logs(self, log: Log) -> None:
        self.check(log)

    # One method, one executor per fold (subclass): each is deterministic, so the
    # differing executors of this abstract class are safe.
    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(random_logs())
    def test_random_command_sequences(self, log: Log) -> None:
        self.check(log)


class TestOrchestratorEvolve(StatusFoldContract):
    def fold(self, log: Log) -> Folded:
        decider = OrchestratorDecider()
        decider.plans.add(log.plan)
        state: RunState | None = None
        for event in log.events:
            state = decider.evolve(state, event)
        assert state is not None
        return expected(state)


class TestSharedFold(StatusFoldContract):
    def fold(self, log: Log) -> Folded:
        folded = statuses_of(log.events, log.plan)
        assert folded is not None
        blocked = {n: folded.blocked_by.get(n, "") for n, s in folded.tasks.items() if s is TaskStatus.BLOCKED}
        return Folded(folded.run.value, {n: s.value for n, s in folded.tasks.items()}, blocked)


class TestClientRunView(StatusFoldContract):
    """As the client folds: the events reference the plan, which it resolves later."""

    def fold(self, log: Log) -> Folded:
        view = RunView(log.state.run_id)
        for offset, event in enumerate(log.events):
            view.apply(offset, event)
        if view.plan_reference is not None:
            view.use_plan(log.plan)
        info = view.info()
        run = info.status
        if run == "dead_lettered":  # the client's word for a running run waiting on a replay
            assert "dead_lettered" in info.tasks.values()
            run = "running"
        assert view.statuses is not None
        blocked = {n: view.statuses.blocked_by.get(n, "") for n, s in info.tasks.items() if s == "blocked"}
        return Folded(run, info.tasks, blocked)

    def test_before_the_plan_is_resolved_the_named_tasks_have_the_same_words(self) -> None:
        log = recorded("cancel after a failure", SCENARIOS["cancel after a failure"]())
        view = RunView(log.state.run_id)
        for offset, event in enumerate(log.events):
            view.apply(offset, event)
        assert view.plan_reference is not None
        assert (view.status, view.tasks) == ("cancelled", {"parser": "cancelled"})


@pytest.mark.postgres
class TestClientViewFromItsRecord(TestClientRunView):
    """As a client that started from the run's ``runs`` record (a duplicate submit's
    answer, a lookup) after any of the run's events, then folded the rest on top:
    every split of the log gives the same words."""

    def fold(self, log: Log) -> Folded:
        decider = OrchestratorDecider()
        decider.plans.add(log.plan)
        state: RunState | None = None
        found: list[Folded] = []
        for split, event in enumerate(log.events, 1):
            state = decider.evolve(state, event)
            if state is not None:
                found.append(self._from(log, run_record(state), split))
        assert found and all(folded == found[0] for folded in found), found
        return found[0]

    @staticmethod
    def _from(log: Log, record: RunRecord, split: int) -> Folded:
        view = from_record(record, split)
        for offset, event in enumerate(log.events[split:], split):
            view.apply(offset, event)
        view.use_plan(log.plan)
        info = view.info()
        run = "running" if info.status == "dead_lettered" else info.status
        assert view.statuses is not None
        blocked = {n: view.statuses.blocked_by.get(n, "") for n, s in info.tasks.items() if s == "blocked"}
        return Folded(run, info.tasks, blocked)


class TestProjector(StatusFoldContract):
    """The projector's statements on a real Postgres, each log as a run of its own."""

    conn: ClassVar[psycopg.Connection[Any]]
    runs: ClassVar[Iterator[int]] = itertools.count()

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _read_model(cls, database_url: str) -> Iterator[None]:
        schema = f"conformance_{uuid.uuid4().hex[:8]}"
        with connect(database_url, schema) as conn:
            migrate(conn, schema)
            cls.conn = conn
            yield
            with conn.transaction():
                conn.execute(f"DROP SCHEMA {schema} CASCADE")

    def fold(self, log: Log) -> Folded:
        run_id = f"{log.state.run_id}-{next(self.runs)}"
        conn = self.conn
        with conn.transaction():
            for at_ms, event in enumerate(log.events, start=1):
                event = dataclasses.replace(event, run_id=run_id)  # type: ignore[call-arg]
                if isinstance(event, RunSubmitted):  # the projector resolves the reference so too
                    event = dataclasses.replace(event, plan=log.plan)
                for sql, params in statements(event, at_ms):
                    conn.execute(sql, params)  # type: ignore[arg-type]
            run = conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()
            rows = conn.execute("SELECT task, status, blocked_by FROM tasks WHERE run_id = %s ORDER BY position",
                                (run_id,)).fetchall()
        assert run is not None
        return Folded(run[0], {task: status for task, status, _ in rows},
                      {task: blocker or "" for task, status, blocker in rows if status == "blocked"})
