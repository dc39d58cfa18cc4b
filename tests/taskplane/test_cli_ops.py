"""The operator CLI over a projected read model: tables, --json, exit 2 on bad input."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.contract import messages as m
from taskplane.processors.projector.app import Projector
from taskplane.streams.topics import Topics, catalog, ensure_topics
from tests.processors.projector._log import log_ends, produce_runs, run_events, wait_projected

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _projected(kafka_config: dict[str, Any], prefix: str, database: str) -> dict[str, str]:
    """A read model of two runs (one done, one dead-lettered) under ``prefix``, projected
    into ``database``; the CLI's environment for it."""
    topics = Topics(prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog())
    events = run_events("stuck", 0, dead_letter=True)
    cut = next(i for i, e in enumerate(events) if isinstance(e, m.TaskReplayed))
    produce_runs(kafka_config, topics.events, [("done", run_events("done", 0)), ("stuck", events[:cut])])
    projector = Projector(kafka_config, topics, database)
    thread = threading.Thread(target=projector.run, daemon=True)
    thread.start()
    wait_projected(database, log_ends(kafka_config, topics.events))
    projector.stop()
    thread.join(30)
    return {"TASKPLANE_DATABASE_URL": database, "TASKPLANE_BOOTSTRAP_SERVERS": str(kafka_config["bootstrap.servers"]),
            "TASKPLANE_TOPIC_PREFIX": prefix}


@pytest.fixture
def env(kafka_config: dict[str, Any], unique_prefix: str, fresh_database: str) -> dict[str, str]:
    """A read model of this test's own (one that changes it: prune)."""
    return _projected(kafka_config, unique_prefix, fresh_database)


@pytest.fixture(scope="module")
def read_env(kafka_config: dict[str, Any], database_url: str) -> Iterator[dict[str, str]]:
    """One read model for the tests that only read it (the bad-input cases exit 2 before
    they could write): projected once per module, not once per case."""
    prefix = f"t-cli-ops-read-{uuid.uuid4().hex[:8]}"
    name = prefix.replace("-", "_")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _projected(kafka_config, prefix, urlunsplit(urlsplit(database_url)._replace(path=f"/{name}")))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_runs_and_dlq_commands(read_env: dict[str, str]) -> None:
    env, runner = read_env, CliRunner()
    listed = runner.invoke(app, ["runs", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert {r["run_id"]: r["status"] for r in json.loads(listed.stdout)} == {"done": "succeeded", "stuck": "running"}
    shown = runner.invoke(app, ["runs", "show", "stuck"], env=env)
    assert shown.exit_code == 0 and "blocked by summarizer" in shown.output and "HTTP 500" in shown.output
    dlq = json.loads(runner.invoke(app, ["dlq", "list", "--json"], env=env).stdout)
    assert [(d["run_id"], d["task"], d["blocked"]) for d in dlq] == [("stuck", "summarizer", 1)]
    show = runner.invoke(app, ["dlq", "show", "stuck/summarizer", "--json"], env=env)
    assert json.loads(show.stdout)["blocks"] == ["publisher"]
    dry = runner.invoke(app, ["dlq", "replay", "--all", "--error-contains", "http 500", "--dry-run", "--json"], env=env)
    assert json.loads(dry.stdout)["replayed"] == ["stuck/summarizer"]


def test_runs_prune_deletes_old_finished_runs_in_batches(env: dict[str, str]) -> None:
    runner = CliRunner()
    recent = runner.invoke(app, ["runs", "prune", "--older-than", "100000d", "--json"], env=env)
    assert recent.exit_code == 0, recent.output
    assert json.loads(recent.stdout)["runs"] == 0  # nothing finished that long ago
    pruned = runner.invoke(app, ["runs", "prune", "--older-than", "30d", "--batch-size", "1", "--json"], env=env)
    assert pruned.exit_code == 0, pruned.output
    assert {k: v for k, v in json.loads(pruned.stdout).items() if k != "finished_before_ms"} == {"runs": 1, "batches": 1}
    listed = json.loads(runner.invoke(app, ["runs", "list", "--json"], env=env).stdout)
    assert [r["run_id"] for r in listed] == ["stuck"]  # a running run is never pruned
    assert runner.invoke(app, ["runs", "show", "done"], env=env).exit_code == 2  # its tasks went with it
    assert "summarizer" in runner.invoke(app, ["runs", "show", "stuck"], env=env).output


@pytest.mark.parametrize("argv", [
    ["runs", "prune", "--older-than", "a month"], ["runs", "prune", "--older-than", "-1d"],
    ["runs", "show", "nope"], ["runs", "list", "--status", "weird"], ["dlq", "show", "no-slash"],
    ["dlq", "show", "stuck/parser"], ["dlq", "replay"], ["replay", "--group", "g", "--topic", "t"],
    ["replay", "--group", "g", "--topic", "t", "--to-time", "yesterday"],
])
def test_bad_input_exits_2_without_traceback(read_env: dict[str, str], argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv, env=read_env)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
