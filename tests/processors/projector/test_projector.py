"""The projector against a real broker and a real Postgres: rows, exactly once across
kill -9, rebuild equality and swap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from taskplane.processors.projector.app import Projector
from taskplane.processors.projector.rebuild import rebuild_projections
from taskplane.streams.topics import Topics, catalog, ensure_topics
from tests.processors.projector._log import dump, log_ends, produce_runs, run_events, wait_projected

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture
def topics(kafka_config: dict[str, Any], unique_prefix: str) -> Topics:
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog())
    return topics


@pytest.fixture
def projector(kafka_config: dict[str, Any], topics: Topics, fresh_database: str) -> Iterator[Projector]:
    projector = Projector(kafka_config, topics, fresh_database)
    thread = threading.Thread(target=projector.run, daemon=True)
    thread.start()
    yield projector
    projector.stop()
    thread.join(30)


def _scenario(kafka_config: dict[str, Any], topics: Topics, runs: int = 6) -> dict[tuple[str, int], int]:
    log = [(f"run-{i}", run_events(f"run-{i}", 1_000 * i, dead_letter=i % 3 == 0)) for i in range(runs)]
    produce_runs(kafka_config, topics.events, log, breakers_topic=topics.breakers)
    return {**log_ends(kafka_config, topics.events), **log_ends(kafka_config, topics.breakers)}


def test_projects_runs_tasks_attempts_tool_calls_dead_letters_and_breakers(
    kafka_config: dict[str, Any], topics: Topics, fresh_database: str, projector: Projector
) -> None:
    wait_projected(fresh_database, _scenario(kafka_config, topics))
    tables = dump(fresh_database)
    assert len(tables["runs"]) == 6
    with psycopg.connect(fresh_database, options="-c search_path=readmodel") as conn:
        assert conn.execute("SELECT DISTINCT status FROM runs").fetchall() == [("succeeded",)]
        assert conn.execute("SELECT count(*) FROM tasks WHERE status = 'succeeded'").fetchone() == (18,)
        assert conn.execute("SELECT sum(tasks_succeeded) FROM runs").fetchone() == (18,)
        # usage: what the outcome events of the run carried, summed per run and per task
        used = [e for e in run_events("run-1", 1_000) if getattr(e, "usage", ())]
        assert used and conn.execute("SELECT tokens, cost_micros FROM runs WHERE run_id = 'run-1'").fetchone() == (
            10 * len(used), 2_500 * len(used))
        assert conn.execute("SELECT tokens FROM tasks WHERE run_id = 'run-1' AND task = 'parser'").fetchone() == (20,)
        # run-0 and run-3 went through dead letter and replay; the journal was kept
        assert conn.execute(
            "SELECT run_id, status, replayed_by FROM dead_letters ORDER BY run_id").fetchall() == [
            ("run-0", "replayed", "operator"), ("run-3", "replayed", "operator")]
        assert conn.execute(
            "SELECT count(*) FROM tool_calls WHERE run_id = 'run-0' AND task = 'summarizer' AND ok").fetchone() == (2,)
        assert conn.execute("SELECT status FROM attempts WHERE run_id = 'run-1' AND task = 'publisher'"
                            " ORDER BY epoch").fetchall() == [("expired",), ("succeeded",)]
        assert conn.execute("SELECT sum(lease_renewals) FROM tasks").fetchone() == (2 * (6 * 4 + 2 * 2),)
        assert conn.execute("SELECT sum(rejections) FROM runs").fetchone() == (2,)
        assert conn.execute("SELECT tool, status FROM breakers ORDER BY tool").fetchall() == [
            ("document.extract", "closed"), ("text.summarize", "open")]


def test_rebuild_from_offset_zero_equals_live_and_swaps_in(
    kafka_config: dict[str, Any], topics: Topics, fresh_database: str, projector: Projector
) -> None:
    wait_projected(fresh_database, _scenario(kafka_config, topics))
    live = dump(fresh_database)
    report = rebuild_projections(kafka_config, topics, fresh_database, swap=False)
    assert dump(fresh_database, report.schema) == live
    swapped = rebuild_projections(kafka_config, topics, fresh_database)
    assert swapped.swapped and swapped.retired is not None
    assert dump(fresh_database) == live
    # the live projector keeps going on the swapped-in tables
    more = [(f"late-{i}", run_events(f"late-{i}", 90_000 + i)) for i in range(2)]
    produce_runs(kafka_config, topics.events, more)
    wait_projected(fresh_database, log_ends(kafka_config, topics.events))
    assert len(dump(fresh_database)["runs"]) == 8
    rebuilt = rebuild_projections(kafka_config, topics, fresh_database, swap=False)
    assert dump(fresh_database, rebuilt.schema) == dump(fresh_database)


def test_projector_killed_mid_batch_resumes_without_missing_or_duplicate_rows(
    kafka_config: dict[str, Any], topics: Topics, fresh_database: str
) -> None:
    runs = 120
    log = [(f"run-{i}", run_events(f"run-{i}", i, renewals=5, dead_letter=i % 4 == 0)) for i in range(runs)]
    produce_runs(kafka_config, topics.events, log, per_transaction=200)
    ends = log_ends(kafka_config, topics.events)
    env = {**os.environ, "TASKPLANE_METRICS_PORT": "0", "TASKPLANE_PROJECTOR_MAX_BATCH_RECORDS": "300",
           "TASKPLANE_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"], "TASKPLANE_DATABASE_URL": fresh_database,
           "TASKPLANE_TOPIC_PREFIX": topics.prefix}
    command = [sys.executable, "-m", "taskplane.cli", "processor", "run", "projector"]
    kills = 0
    for delay in (2.5, 1.0, 0.7, 1.3):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_projected(fresh_database, ends, timeout_s=120)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    with psycopg.connect(fresh_database, options="-c search_path=readmodel") as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'").fetchone() == (runs,)
        # counters would double on a re-applied batch
        assert conn.execute("SELECT sum(lease_renewals) FROM tasks").fetchone() == (5 * (runs * 4 + 30 * 2),)
        assert conn.execute("SELECT sum(tasks_succeeded), sum(rejections) FROM runs").fetchone() == (runs * 3, 30)
        assert conn.execute("SELECT count(*) FROM tool_calls").fetchone() == (runs * 3 + 30 * 3,)
        assert conn.execute("SELECT count(*), sum(times) FROM dead_letters").fetchone() == (30, 30)
    assert kills == 4


def test_an_undecodable_event_lands_on_poison_and_projection_continues(
    kafka_config: dict[str, Any], topics: Topics, fresh_database: str, projector: Projector
) -> None:
    from confluent_kafka import Consumer, Producer

    producer = Producer(dict(kafka_config))
    producer.produce(topics.events, b"\x00 not an event", b"run-x", partition=0)
    assert producer.flush(10) == 0
    wait_projected(fresh_database, _scenario(kafka_config, topics, runs=2))
    assert len(dump(fresh_database)["runs"]) == 2

    consumer = Consumer({**kafka_config, "group.id": f"poison-{time.monotonic_ns()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topics.poison])
    record = None
    deadline = time.monotonic() + 30
    while record is None and time.monotonic() < deadline:
        polled = consumer.poll(0.5)
        if polled is not None and polled.error() is None:
            record = polled
    consumer.close()
    assert record is not None, "the undecodable event never reached poison"
    headers = dict(record.headers() or [])
    assert record.value() == b"\x00 not an event"
    assert headers["source.topic"] == topics.events.encode()
    assert headers["source.offset"] == b"0" and headers["processor"] == b"projector"
