"""A synthetic read model for bench.console, generated inside Postgres
(generate_series): N runs of five systems over the week before ``now_ms``, each a
4-task diamond (parser -> validator, summarizer -> publisher) with attempts and a
tool journal; about 90 % succeeded, 5 % running, 3 % failed, 1 % cancelled and 1 %
blocked behind a dead-lettered validator. Deterministic for a given N and now."""

from __future__ import annotations

from typing import Any

import psycopg

SYSTEMS = ("document-pipeline", "payment-processor", "research-agent", "support-triage", "etl-nightly")
NOTES = ("", "priority", "retry after outage", "quarterly report", "refund")

# i -> a hash-derived bucket (0-99) picks the run's kind; run ids are md5(i), like uuid hex.
_RUNS = """
INSERT INTO runs (run_id, system, version, status, input, submitted_ms, finished_ms, reason, tasks_total,
                  tasks_succeeded, updated_ms)
SELECT md5(i::text), (%(systems)s::text[])[1 + i %% 5], 'v3f2a9c1',
       CASE WHEN b < 90 THEN 'succeeded' WHEN b < 95 OR b = 99 THEN 'running' WHEN b < 98 THEN 'failed'
            ELSE 'cancelled' END,
       json_build_object('customer', 'cust-' || (i * 7919) %% 50000, 'order', 'order-' || i,
                         'amount', 100 + (i * 104729) %% 99900,
                         'note', (%(notes)s::text[])[1 + (i / 7) %% 5])::text,
       %(now)s - (i::bigint * 2654435761) %% %(week)s,
       CASE WHEN b < 90 OR (b >= 95 AND b < 99) THEN %(now)s - (i::bigint * 2654435761) %% %(week)s + 200 + i %% 60000
       END,
       CASE WHEN b >= 95 AND b < 98 THEN 'task validator failed: schema mismatch'
            WHEN b = 98 THEN 'cancelled by operator' END,
       4, CASE WHEN b < 90 THEN 4 WHEN b = 99 THEN 2 WHEN b < 95 THEN i %% 2 ELSE 1 END,
       %(now)s - (i::bigint * 2654435761) %% %(week)s
FROM (SELECT i, (i * 37 + i / 13) %% 100 AS b FROM generate_series(1::bigint, %(runs)s::bigint) AS i) AS s
"""
_TASKS = """
INSERT INTO tasks (run_id, task, position, dependencies, tools, status, attempt, failures, epoch, blocked_by,
                   last_error, output, first_ready_ms, finished_ms, updated_ms)
SELECT r.run_id, t.task, t.position, t.deps, ARRAY[t.task || '.tool'], s.status,
       CASE s.status WHEN 'dead_lettered' THEN 3 WHEN 'pending' THEN 0 WHEN 'blocked' THEN 0 ELSE 1 END,
       CASE s.status WHEN 'dead_lettered' THEN 3 ELSE 0 END,
       CASE s.status WHEN 'dead_lettered' THEN 3 WHEN 'pending' THEN 0 WHEN 'blocked' THEN 0 ELSE 1 END,
       CASE s.status WHEN 'blocked' THEN 'validator' END,
       CASE s.status WHEN 'dead_lettered' THEN 'HTTP 500 from upstream' WHEN 'failed' THEN 'schema mismatch' END,
       CASE s.status WHEN 'succeeded' THEN json_build_object('ok', t.task)::text END,
       r.submitted_ms + t.position * 50,
       CASE s.status WHEN 'succeeded' THEN r.submitted_ms + t.position * 50 + 40 END,
       r.submitted_ms + t.position * 50
FROM runs r
CROSS JOIN (VALUES ('parser', 0, ARRAY[]::text[]), ('validator', 1, ARRAY['parser']),
                   ('summarizer', 2, ARRAY['parser']), ('publisher', 3, ARRAY['validator', 'summarizer']))
     AS t (task, position, deps)
CROSS JOIN LATERAL (SELECT CASE
    WHEN r.tasks_succeeded = 2 AND r.status = 'running' AND t.position = 1 THEN 'dead_lettered'
    WHEN r.tasks_succeeded = 2 AND r.status = 'running' AND t.position = 3 THEN 'blocked'
    WHEN r.status = 'succeeded' OR t.position < r.tasks_succeeded OR r.tasks_succeeded = 2 THEN 'succeeded'
    WHEN r.status = 'running' AND t.position = r.tasks_succeeded THEN 'leased'
    WHEN r.status = 'running' THEN 'pending'
    WHEN r.status = 'failed' AND t.position = 1 THEN 'failed'
    ELSE 'cancelled' END AS status) AS s
ORDER BY r.run_id, t.position  -- primary-key order: appends to the index instead of random inserts
"""
_ATTEMPTS = """
INSERT INTO attempts (run_id, task, epoch, attempt, worker_id, status, renewals, error, started_ms, ended_ms)
SELECT t.run_id, t.task, e, e, 'w' || e %% 3 || '.' || left(t.run_id, 2),
       CASE WHEN t.status = 'succeeded' THEN 'succeeded' WHEN t.status = 'leased' THEN 'running' ELSE 'failed' END,
       0, CASE WHEN t.status IN ('dead_lettered', 'failed') THEN t.last_error END,
       t.first_ready_ms + e * 5, CASE WHEN t.status <> 'leased' THEN t.first_ready_ms + e * 5 + 30 END
FROM tasks t CROSS JOIN LATERAL generate_series(1, t.epoch) AS e
ORDER BY t.run_id, t.task, e
"""
_TOOL_CALLS = """
INSERT INTO tool_calls (run_id, task, epoch, key, tool, call_index, ok, result, at_ms)
SELECT run_id, task, 1, md5(run_id || task), task || '.tool', 0, true, '{"ok": true}', first_ready_ms + 20
FROM tasks WHERE status = 'succeeded' ORDER BY run_id, task
"""
_DEAD_LETTERS = """
INSERT INTO dead_letters (run_id, task, system, status, attempts, error, dead_lettered_ms)
SELECT t.run_id, t.task, r.system, 'open', 3, t.last_error, t.first_ready_ms + 400
FROM tasks t JOIN runs r USING (run_id) WHERE t.status = 'dead_lettered'
"""


def run_id(index: int) -> str:
    """The id of the ``index``-th run (1-based), as the fill writes it."""
    import hashlib

    return hashlib.md5(str(index).encode()).hexdigest()


def fill(conn: psycopg.Connection[Any], runs: int, now_ms: int) -> dict[str, int]:
    """Write ``runs`` runs and their rows in one transaction; returns row counts per table.

    The migrations' secondary indexes are dropped first and re-created afterwards from
    their own definitions (pg_indexes): a bulk build instead of 100,000s of inserts."""
    params = {"systems": list(SYSTEMS), "notes": list(NOTES), "now": now_ms, "week": 7 * 86_400_000, "runs": runs}
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint)").fetchall()
    for name, _definition in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    counts = {}
    for table, statement in (("runs", _RUNS), ("tasks", _TASKS), ("attempts", _ATTEMPTS),
                             ("tool_calls", _TOOL_CALLS), ("dead_letters", _DEAD_LETTERS)):
        counts[table] = conn.execute(statement, params).rowcount  # type: ignore[arg-type]
    for _name, definition in indexes:
        conn.execute(definition)
    conn.execute("ANALYZE")
    return counts
