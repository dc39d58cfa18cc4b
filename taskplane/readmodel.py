"""Queries over the Postgres read model, for the CLI (and the web UI).

Read-only. Every query runs against the live schema by name (``readmodel``), so a
``rebuild projections`` swap is seen atomically. Rows come back as plain dicts.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from taskplane.contract.errors import TaskplaneError
from taskplane.processors.projector.schema import LIVE_SCHEMA, schema_exists

RUN_STATUSES = ("running", "succeeded", "failed", "cancelled")
Row = dict[str, Any]


class ReadModelError(TaskplaneError):
    """The read model cannot answer (absent, unreachable, or the id is unknown).
    ``retryable`` when Postgres was unreachable, not when the answer is "no such id"."""


class ReadModel:
    def __init__(self, database_url: str, schema: str = LIVE_SCHEMA) -> None:
        try:
            self._conn: psycopg.Connection[Row] = psycopg.connect(
                database_url, autocommit=True, row_factory=dict_row, options=f"-c search_path={schema}"
            )
        except psycopg.OperationalError as error:
            raise ReadModelError(f"cannot connect to the read model database: {error}", retryable=True) from None
        if not schema_exists(self._conn, schema):  # type: ignore[arg-type]
            self._conn.close()
            raise ReadModelError(f"no read model (schema {schema!r}) yet: is the projector running?")

    def __enter__(self) -> ReadModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    def _all(self, query: str, params: tuple[Any, ...] = ()) -> list[Row]:
        return self._conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def runs(self, system: str | None = None, statuses: list[str] | None = None, limit: int = 200) -> list[Row]:
        return self._all(
            "SELECT run_id, system, version, status, tasks_succeeded, tasks_total, submitted_ms, finished_ms,"
            " reason, tenant, priority FROM runs WHERE (%s::text IS NULL OR system = %s)"
            " AND (%s::text[] IS NULL OR status = ANY(%s)) ORDER BY submitted_ms DESC, run_id LIMIT %s",
            (system, system, statuses, statuses, limit),
        )

    def run(self, run_id: str) -> Row:
        rows = self._all("SELECT * FROM runs WHERE run_id = %s", (run_id,))
        if not rows:
            raise ReadModelError(f"RUN: no run {run_id!r} in the read model")
        return rows[0]

    def tasks(self, run_id: str) -> list[Row]:
        return self._all("SELECT * FROM tasks WHERE run_id = %s ORDER BY position", (run_id,))

    def attempts(self, run_id: str, task: str | None = None) -> list[Row]:
        return self._all(
            "SELECT * FROM attempts WHERE run_id = %s AND (%s::text IS NULL OR task = %s) ORDER BY task, epoch",
            (run_id, task, task),
        )

    def tool_calls(self, run_id: str, task: str | None = None) -> list[Row]:
        return self._all(
            "SELECT * FROM tool_calls WHERE run_id = %s AND (%s::text IS NULL OR task = %s)"
            " ORDER BY task, call_index, epoch",
            (run_id, task, task),
        )

    def dead_letters(self, system: str | None = None, error_contains: str | None = None,
                     include_replayed: bool = False) -> list[Row]:
        return self._all(
            "SELECT d.*, t.blocked FROM dead_letters d LEFT JOIN LATERAL ("
            "  SELECT count(*) AS blocked FROM tasks b WHERE b.run_id = d.run_id AND b.blocked_by = d.task"
            "  AND b.status = 'blocked') t ON true"
            " WHERE (%s OR d.status = 'open') AND (%s::text IS NULL OR d.system = %s)"
            " AND (%s::text IS NULL OR strpos(lower(d.error), lower(%s)) > 0)"
            " ORDER BY d.dead_lettered_ms, d.run_id, d.task",
            (include_replayed, system, system, error_contains, error_contains),
        )

    def dead_letter(self, run_id: str, task: str) -> Row:
        rows = self._all("SELECT * FROM dead_letters WHERE run_id = %s AND task = %s", (run_id, task))
        if not rows:
            raise ReadModelError(f"TASK: no dead letter {run_id}/{task} in the read model")
        return rows[0]

    def systems(self) -> list[str]:
        return [row["system"] for row in self._all("SELECT DISTINCT system FROM runs ORDER BY 1")]
