"""The runbook (docs/runbook.md) on the real broker and Postgres, through the real CLI:
a dead letter handled in five operator commands (the journal keeps done tool calls
done), ``rebuild state`` equal to the live changelog, and a consumer-group reset of the
orchestrator that reprocesses commands with no duplicate effect.

Projections rebuilt from offset 0 equal to the live tables is covered by
tests/processors/projector/test_projector.py (test_rebuild_from_offset_zero_equals_live_and_swaps_in).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.contract import messages as m
from taskplane.streams.offsets import watermarks
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import EventLog, WorkerProcess, worker_env
from tests.e2e._ops_helpers import executions
from tests.e2e.e2e_pipeline import TEARDOWN_STOP_S, Harness

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
OPS_TOOLS = str(Path(__file__).resolve().parent / "_ops_helpers.py")
OPS = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: ops}
spec:
  agents:
    - name: gather
      tools: [ops.step]
    - name: crunch
      tools: [ops.step, ops.flaky]
      dependencies: [gather]
    - name: report
      tools: [ops.step]
      dependencies: [crunch]
  execution: {leaseTimeout: 3s, maxRetries: 2, initialBackoff: 200ms, backoffMultiplier: 2.0,
              maxBackoffCap: 1s, jitterFraction: 0.1}
"""
READ_MODEL_TABLES = ("runs", "tasks", "attempts", "tool_calls", "dead_letters", "breakers")


class Ops(Harness):
    """Orchestrator, breaker and projector (live schema ``readmodel``) in threads, each
    stoppable and restartable on its own; worker processes; a follower of ``events``;
    the CLI with this test's endpoints and prefix."""

    def __init__(self, kafka: dict[str, Any], topics: Topics, database_url: str, log_dir: Path) -> None:
        self.kafka, self.topics, self.database_url, self.log_dir = kafka, topics, database_url, log_dir
        self.runners: dict[str, Any] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.failures: dict[str, BaseException] = {}
        self.workers: list[WorkerProcess] = []
        self.env = worker_env(kafka["bootstrap.servers"], database_url, topics.prefix)
        self.publisher = Publisher(kafka, topics)
        self.log = EventLog(kafka, topics.events)

    # ------------------------------------------------------------ processors

    def _build(self, name: str) -> Any:
        from taskplane.processors.breaker.app import breaker_runtime
        from taskplane.processors.orchestrator.app import orchestrator_runtime
        from taskplane.streams.runtime_settings import RuntimeSettings

        settings = RuntimeSettings(instance_id=f"{self.topics.prefix}-0", max_batch_ms=50,
                                   tick_interval_ms=100, session_timeout_ms=6_000)
        if name == "orchestrator":
            return orchestrator_runtime(self.kafka, self.topics, settings)
        if name == "breaker":
            return breaker_runtime(self.kafka, self.topics, settings)
        from taskplane.processors.projector.app import Projector, ProjectorSettings

        return Projector(self.kafka, self.topics, self.database_url,
                         ProjectorSettings(instance_id=f"{self.topics.prefix}-projector", max_batch_ms=100,
                                           session_timeout_ms=6_000))

    def start(self, *names: str) -> None:
        for name in names:
            runner = self._build(name)
            thread = threading.Thread(target=self._run, args=(name, runner), name=name, daemon=True)
            self.runners[name], self.threads[name] = runner, thread
            thread.start()

    def _run(self, name: str, runner: Any) -> None:
        try:
            runner.run()
        except BaseException as error:
            self.failures[name] = error

    def stop(self, *names: str) -> None:
        for name in names:
            self.runners.pop(name).stop()
            self.threads.pop(name).join(20)

    def check(self) -> None:
        if self.failures:
            name, error = next(iter(self.failures.items()))
            raise RuntimeError(f"processor {name} died: {error!r}") from error

    # ------------------------------------------------------------ helpers

    def until(self, condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            self.check()
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; worker logs (tails): {self.worker_logs(2000)}")
            time.sleep(0.1)

    def wait(self, condition: Callable[[EventLog], Any], timeout_s: float = 30.0) -> Any:
        return self.log.wait_for(condition, timeout_s, also=self.check)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        try:
            with psycopg.connect(self.database_url, options="-c search_path=readmodel") as conn:
                return conn.execute(sql, params).fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return []

    def table_rows(self) -> dict[str, list[str]]:
        """Every read-model row (``runs`` without its ``rejections`` counter)."""
        rows = {t: sorted(map(repr, self.query(f"SELECT * FROM {t}"))) for t in READ_MODEL_TABLES}
        rows["runs"] = sorted(map(repr, self.query(
            "SELECT run_id, system, version, status, input, idempotency_key, submitted_ms, finished_ms, reason, "
            "tasks_total, tasks_succeeded, updated_ms FROM runs")))
        return rows

    def rejections(self) -> dict[str, int]:
        return dict(self.query("SELECT run_id, rejections FROM runs"))  # type: ignore[arg-type]

    def projector_caught_up(self) -> bool:
        """The test's event log is at the end of ``events`` and the read model's stored
        offsets are past its last record in every partition (what follows a partition's last
        record is transaction markers, one per producer id whose commit ended there)."""
        if not self.log_caught_up():
            return False
        stored = dict(self.query("SELECT partition, next_offset FROM projector_offsets WHERE topic = %s",
                                 self.topics.events))
        return all(stored.get(p, 0) >= end for p, end in self.log.record_ends().items())

    def log_caught_up(self) -> bool:
        """The test's own event log has read what the orchestrator has committed so far."""
        return self.log.reached({p: high for p, (_low, high) in watermarks(self.kafka, self.topics.events).items()})

    def cli(self, *args: str) -> Any:
        env = {"TASKPLANE_BOOTSTRAP_SERVERS": self.kafka["bootstrap.servers"],
               "TASKPLANE_DATABASE_URL": self.database_url, "TASKPLANE_TOPIC_PREFIX": self.topics.prefix,
               "COLUMNS": "400"}
        return CliRunner().invoke(app, list(args), env=env)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(TEARDOWN_STOP_S)
        self.stop(*list(self.runners))
        self.log.close()


@pytest.fixture
def ops(kafka_config: dict[str, Any], fresh_database: str, unique_prefix: str, tmp_path: Path) -> Iterator[Ops]:
    kafka = {**kafka_config, "log_level": 3}
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(kafka), topics, catalog(2, 1))
    built = Ops(kafka, topics, fresh_database, tmp_path)
    built.start("orchestrator", "breaker", "projector")
    try:
        yield built
    finally:
        built.close()


def _run_dir(tmp_path: Path, name: str, broken: bool = False) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    if broken:
        (directory / "broken").write_text("revoked\n")
    return directory


def _ok(result: Any) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return str(result.output)


# ---------------------------------------------------------------- 1. the runbook


def test_the_runbook_replays_a_dead_letter_in_five_commands_without_rerunning_done_tool_calls(
        ops: Ops, tmp_path: Path) -> None:
    plan = ops.define(OPS)
    ops.worker("w1", {"ops": OPS_TOOLS})
    work = _run_dir(tmp_path, "run", broken=True)
    run_id = ops.publisher.submit_run(plan, {"dir": str(work)})
    ops.publisher.flush()
    ops.wait(lambda log: log.events(m.TaskDeadLettered, run_id), 40)
    ops.until(lambda: ops.query("SELECT 1 FROM dead_letters WHERE run_id = %s AND status = 'open'", run_id),
              15, "the dead letter in the read model")
    ops.until(lambda: ops.query("SELECT 1 FROM tasks WHERE run_id = %s AND task = 'report' AND status = 'blocked'",
                                run_id), 15, "report blocked in the read model")
    before = {name: executions(work, name) for name in ("gather", "crunch-before", "flaky")}
    assert before == {"gather": 1, "crunch-before": 1, "flaky": 0}, before  # the journal answered attempt 2

    # 1. taskplane dlq list
    listed = _ok(ops.cli("dlq", "list"))
    assert f"{run_id}/crunch" in listed and "broken" in listed, listed
    # 2. taskplane dlq show RUN/TASK
    shown = _ok(ops.cli("dlq", "show", f"{run_id}/crunch"))
    assert "credentials revoked (broken)" in shown and "blocks: report" in shown, shown
    assert "after 2 attempts" in shown, shown
    # 3. fix the cause (not a taskplane command)
    (work / "broken").unlink()
    # 4. taskplane dlq replay RUN/TASK
    replayed = _ok(ops.cli("dlq", "replay", f"{run_id}/crunch"))
    assert f"replayed {run_id}/crunch" in replayed, replayed
    ops.wait(lambda log: log.events(m.RunSucceeded, run_id), 30)
    ops.until(lambda: ops.query("SELECT 1 FROM runs WHERE run_id = %s AND status = 'succeeded'", run_id),
              15, "the run succeeded in the read model")
    # 5. taskplane runs show RUN
    final = _ok(ops.cli("runs", "show", run_id))
    assert f"{run_id} ops" in final and ": succeeded" in final.splitlines()[0], final
    assert "report after crunch: succeeded" in final, final

    # Done tool calls were not executed again; the broken one ran once, after the fix.
    after = {name: executions(work, name) for name in ("gather", "crunch-before", "flaky", "report")}
    assert after == {"gather": 1, "crunch-before": 1, "flaky": 1, "report": 1}, after
    succeeded = Counter((e.task) for e in ops.log.events(m.TaskSucceeded, run_id))
    assert succeeded == {"gather": 1, "crunch": 1, "report": 1}
    assert len(ops.log.events(m.RunSucceeded, run_id)) == 1
    letter = json.loads(_ok(ops.cli("dlq", "list", "--all", "--json")))
    assert [(r["run_id"], r["task"], r["status"]) for r in letter] == [(run_id, "crunch", "replayed")]


# ---------------------------------------------------------------- 3. rebuild state


def _some_runs(ops: Ops, tmp_path: Path, count: int) -> list[str]:
    plan = ops.define(OPS)
    if not ops.workers:
        ops.worker("w1", {"ops": OPS_TOOLS})
    runs = [ops.publisher.submit_run(plan, {"dir": str(_run_dir(tmp_path, f"run{i}"))}) for i in range(count)]
    ops.publisher.flush()
    ops.wait(lambda log: set(runs) <= {e.run_id for e in log.events(m.RunSucceeded)}, 45)
    return runs


def test_rebuild_state_after_some_runs_equals_the_live_changelog(ops: Ops, tmp_path: Path) -> None:
    runs = _some_runs(ops, tmp_path, 3)
    out = _ok(ops.cli("rebuild", "state"))
    assert "0 differing" in out, out
    report = json.loads(_ok(ops.cli("rebuild", "state", "--json")))
    assert report["differing"] == [] and report["keys"] == report["equal"] >= len(runs), report
    assert report["written"] is False


# ---------------------------------------------------------------- 4. consumer-group reset


def _changelog_states(ops: Ops) -> dict[str, bytes | None]:
    from taskplane.streams.offsets import read_all

    latest: dict[str, bytes | None] = {}
    for _partition, key, value in read_all(ops.kafka, ops.topics.name("orchestrator-changelog")):
        latest[key] = value
    return latest


def test_resetting_the_orchestrator_group_to_a_time_reprocesses_commands_with_no_duplicate_effect(
        ops: Ops, tmp_path: Path) -> None:
    ops.define(OPS)
    ops.worker("w1", {"ops": OPS_TOOLS})
    time.sleep(0.05)  # log times have millisecond resolution: the reset time is strictly after the define
    reset_to = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(0.05)
    runs = _some_runs(ops, tmp_path, 3)
    ops.until(ops.projector_caught_up, 20, "the projector at the end of events")
    ops.until(ops.log_caught_up, 20, "the test's event log at the end of events")
    states_before = _changelog_states(ops)
    rows_before, rejections_before = ops.table_rows(), ops.rejections()
    tools_before = {str(p): p.read_text() for p in tmp_path.rglob("*.count")}
    events_before = len(ops.log.all_events())
    assert rows_before["runs"] and len(rows_before["runs"]) == len(runs)

    group, commands = f"{ops.topics.prefix}.orchestrator", ops.topics.name("commands")
    ops.stop("orchestrator")
    ops.until(lambda: not _live(ops, group), 20, "the orchestrator group to be empty")
    ends = {p: high for p, (_low, high) in watermarks(ops.kafka, commands).items()}
    moved = json.loads(_ok(ops.cli("replay", "--group", group, "--topic", commands, "--to-time", reset_to, "--json")))
    assert moved["live_members"] == []
    assert sum((r["old"] or 0) - r["new"] for r in moved["partitions"]) > 0, moved  # there is something to reprocess
    ops.start("orchestrator")
    ops.until(lambda: _committed(ops, group, commands) == ends, 40,
              "the orchestrator to reprocess the commands up to their end")
    ops.until(ops.projector_caught_up, 20, "the projector at the end of events")
    ops.until(ops.log_caught_up, 20, "the test's event log at the end of events")  # it follows in a thread

    # Reprocessed commands were rejected as duplicates or stale, not re-applied.
    new_events = ops.log.all_events()[events_before:]
    assert new_events, "the reset reprocessed nothing"
    assert all(isinstance(e, m.CommandRejected) for e in new_events), Counter(type(e).__name__ for e in new_events)
    assert {e.run_id for e in new_events if e.command == "SubmitRun"} == set(runs)
    for run_id in runs:
        assert len(ops.log.events(m.RunSucceeded, run_id)) == 1
        assert Counter(e.task for e in ops.log.events(m.TaskSucceeded, run_id)) == {
            "gather": 1, "crunch": 1, "report": 1}
    assert _changelog_states(ops) == states_before
    rows_after = ops.table_rows()
    assert {t: len(r) for t, r in rows_after.items()} == {t: len(r) for t, r in rows_before.items()}
    assert rows_after == rows_before
    rejected = Counter(e.run_id for e in new_events)  # the read model counts them, and nothing else moved
    assert ops.rejections() == {r: n + rejected[r] for r, n in rejections_before.items()}
    assert {str(p): p.read_text() for p in tmp_path.rglob("*.count")} == tools_before  # no tool ran again
    assert "0 differing" in _ok(ops.cli("rebuild", "state"))


def _live(ops: Ops, group: str) -> list[str]:
    """Members of ``group`` (an AdminClient kept alive until its future resolves: see the xfail)."""
    admin = AdminClient(ops.kafka)
    description = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=8)
    return [m.client_id for m in description.members]


def _committed(ops: Ops, group: str, topic: str) -> dict[int, int]:
    admin = AdminClient(ops.kafka)
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in watermarks(ops.kafka, topic)])]
    result = admin.list_consumer_group_offsets(request, request_timeout=5)[group].result(timeout=8)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}
