"""Read-model rows written by hand, for the console's tests: a schema migrated by the
projector's own migrations, and runs with tasks, attempts, journal and dead letters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from taskplane.processors.projector.schema import migrate


def create_read_model(url: str, schema: str = "readmodel") -> None:
    with psycopg.connect(url) as conn:
        migrate(conn, schema)  # type: ignore[arg-type]


def add_run(url: str, run_id: str, *, system: str = "docs", status: str = "running", input_text: str = "{}",
            submitted_ms: int = 1_700_000_000_000, tasks: Sequence[dict[str, Any]] = (),
            schema: str = "readmodel") -> None:
    """A run and its tasks; a task dict may hold ``attempts`` and ``calls`` lists and a
    ``dead_letter`` error (then an open dead letter is written)."""
    with psycopg.connect(url, options=f"-c search_path={schema}") as conn:
        succeeded = sum(1 for t in tasks if t.get("status") == "succeeded")
        conn.execute(
            "INSERT INTO runs (run_id, system, version, status, input, submitted_ms, tasks_total, tasks_succeeded,"
            " updated_ms, finished_ms) VALUES (%s, %s, 'v1abcdef', %s, %s, %s, %s, %s, %s, %s)",
            (run_id, system, status, input_text, submitted_ms, len(tasks), succeeded, submitted_ms,
             submitted_ms + 5000 if status != "running" else None))
        for position, task in enumerate(tasks):
            conn.execute(
                "INSERT INTO tasks (run_id, task, position, dependencies, tools, status, attempt, epoch, holder,"
                " lease_expires_ms, blocked_by, last_error, output, first_ready_ms, updated_ms)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_id, task["task"], position, task.get("dependencies", []), task.get("tools", []),
                 task.get("status", "pending"), len(task.get("attempts", [])), len(task.get("attempts", [])),
                 task.get("holder"), task.get("lease_expires_ms"), task.get("blocked_by"), task.get("last_error"),
                 task.get("output"), submitted_ms, submitted_ms))
            for epoch, attempt in enumerate(task.get("attempts", []), start=1):
                conn.execute(
                    "INSERT INTO attempts (run_id, task, epoch, attempt, worker_id, status, error, started_ms,"
                    " ended_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (run_id, task["task"], epoch, epoch, attempt.get("worker", "w1"), attempt["status"],
                     attempt.get("error"), submitted_ms + epoch, submitted_ms + epoch + 10))
            for index, call in enumerate(task.get("calls", [])):
                conn.execute(
                    "INSERT INTO tool_calls (run_id, task, epoch, key, tool, call_index, ok, result, error, at_ms)"
                    " VALUES (%s, %s, 1, %s, %s, %s, %s, %s, %s, %s)",
                    (run_id, task["task"], f"key-{run_id}-{task['task']}-{index}", call["tool"], index,
                     call.get("ok", True), call.get("result"), call.get("error"), submitted_ms))
            if task.get("dead_letter"):
                conn.execute(
                    "INSERT INTO dead_letters (run_id, task, system, status, attempts, error, dead_lettered_ms)"
                    " VALUES (%s, %s, %s, 'open', %s, %s, %s)",
                    (run_id, task["task"], system, len(task.get("attempts", [])), task["dead_letter"],
                     submitted_ms + 100))


def diamond(statuses: dict[str, str], error: str = "HTTP 500 from fakepay") -> list[dict[str, Any]]:
    """parser -> validator, summarizer -> publisher, with the given task states; a
    dead-lettered task blocks its downstream."""
    shape = {"parser": [], "validator": ["parser"], "summarizer": ["parser"], "publisher": ["validator", "summarizer"]}
    tasks = []
    for name, deps in shape.items():
        status = statuses.get(name, "pending")
        task: dict[str, Any] = {"task": name, "dependencies": deps, "tools": ["doc.step"], "status": status}
        if status == "succeeded":
            task["attempts"] = [{"status": "succeeded"}]
            task["calls"] = [{"tool": "doc.step", "result": '{"ok": true}'}]
            task["output"] = json.dumps({"done": name})
        if status == "dead_lettered":
            task["attempts"] = [{"status": "failed", "error": error}] * 3
            task["last_error"] = error
            task["dead_letter"] = error
        if status == "blocked":
            # as the orchestrator does: every task downstream names the dead letter itself
            task["blocked_by"] = next(n for n, s in statuses.items() if s == "dead_lettered")
        tasks.append(task)
    return tasks
