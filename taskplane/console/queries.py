"""The console's reads of the Postgres read model, through a small connection pool.

Every failure to reach Postgres (down, no schema yet, a statement timeout) becomes
``ReadModelUnavailable`` with a message that never carries the connection string.
Lists are keyset-paginated on (submitted_ms DESC, run_id DESC), which
``0002_console_indexes.sql`` indexes per filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from taskplane.console.errors import NotFound, ReadModelUnavailable
from taskplane.console.filters import Cursor, DeadLetterFilter, RunFilter
from taskplane.contract.governance import format_cost

Row = dict[str, Any]
MINUTE_MS = 60_000
RATE_WINDOW_MS = 10 * MINUTE_MS  # lease expirations and retries per minute, over this window
INPUT_PREVIEW = 160
_RUN_COLUMNS = ("run_id, system, version, status, tasks_succeeded, tasks_total, submitted_ms, finished_ms, tenant, priority,"
                f" reason, rejections, left(input, {INPUT_PREVIEW}) AS input_preview")


def _like_escape(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern (backslash is LIKE's escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ConsoleQueries:
    def __init__(self, database_url: str, schema: str, pool_size: int, timeout_s: float) -> None:
        self._schema = schema
        self._timeout_s = timeout_s
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            database_url, min_size=1, max_size=pool_size, open=False, timeout=timeout_s,
            kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None,
                    "connect_timeout": max(1, int(timeout_s)),
                    "options": f"-c search_path={schema} -c statement_timeout={int(timeout_s * 1000)}"},
        )

    def open(self) -> None:
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Row]]:
        try:
            with self._pool.connection(timeout=self._timeout_s) as conn:
                yield conn
        except PoolTimeout:
            raise ReadModelUnavailable("the read model's Postgres does not answer") from None
        except psycopg.errors.UndefinedTable:
            raise ReadModelUnavailable(f"no read model (schema {self._schema!r}) yet: is the projector running?"
                                       ) from None
        except psycopg.errors.QueryCanceled:
            raise ReadModelUnavailable("the read model took too long to answer") from None
        except psycopg.OperationalError:
            raise ReadModelUnavailable("lost the connection to the read model's Postgres") from None

    def _all(self, query: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self._connection() as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def ready(self) -> bool:
        try:
            rows = self._all("SELECT 1 AS ok FROM pg_namespace WHERE nspname = %s", (self._schema,))
        except ReadModelUnavailable:
            return False
        return bool(rows)

    # ------------------------------------------------------------ runs

    def runs(self, where: RunFilter) -> tuple[list[Row], Cursor | None]:
        """One page of runs, newest first, and the cursor of the next page (None: last page)."""
        clauses: list[str] = []
        params: list[Any] = []
        if where.system:
            clauses.append("system = %s")
            params.append(where.system)
        if where.tenant:
            clauses.append("tenant = %s")
            params.append(where.tenant)
        if where.statuses:
            clauses.append("status = ANY(%s)")
            params.append(list(where.statuses))
        if where.since_ms is not None:
            clauses.append("submitted_ms >= %s")
            params.append(where.since_ms)
        if where.until_ms is not None:
            clauses.append("submitted_ms < %s")
            params.append(where.until_ms)
        if where.search:
            escaped = _like_escape(where.search)
            clauses.append("(run_id LIKE %s OR input ILIKE %s)")
            params += [f"{escaped}%", f"%{escaped}%"]
        if where.after is not None:
            clauses.append("(submitted_ms, run_id) < (%s, %s)")
            params += [where.after.submitted_ms, where.after.run_id]
        condition = " AND ".join(clauses) or "true"
        rows = self._all(f"SELECT {_RUN_COLUMNS} FROM runs WHERE {condition}"
                         " ORDER BY submitted_ms DESC, run_id DESC LIMIT %s", (*params, where.limit + 1))
        more = len(rows) > where.limit
        rows = rows[:where.limit]
        return rows, Cursor(rows[-1]["submitted_ms"], rows[-1]["run_id"]) if more else None

    def run_page(self, run_id: str) -> Row:
        """A run with its tasks, attempts, tool journal and dead letters, in one connection."""
        with self._connection() as conn:
            run = conn.execute("SELECT * FROM runs WHERE run_id = %s", (run_id,)).fetchone()
            if run is None:
                raise NotFound(f"no run {run_id!r} in the read model")
            tasks = conn.execute("SELECT * FROM tasks WHERE run_id = %s ORDER BY position", (run_id,)).fetchall()
            attempts = conn.execute("SELECT * FROM attempts WHERE run_id = %s ORDER BY task, epoch",
                                    (run_id,)).fetchall()
            calls = conn.execute("SELECT * FROM tool_calls WHERE run_id = %s ORDER BY task, call_index, epoch",
                                 (run_id,)).fetchall()
            letters = conn.execute("SELECT * FROM dead_letters WHERE run_id = %s ORDER BY task",
                                   (run_id,)).fetchall()
        return {"run": run, "tasks": tasks, "attempts": attempts, "tool_calls": calls, "dead_letters": letters}

    def systems_seen(self) -> list[Row]:
        return self._all("SELECT system, version, count(*) AS runs, max(submitted_ms) AS last_submitted_ms"
                         " FROM runs GROUP BY system, version ORDER BY system, max(submitted_ms) DESC")

    # ------------------------------------------------------------ overview

    def overview(self, now_ms: int, hours: int = 24) -> Row:
        """The runbook's dashboard: runs by status (total and per hour), open dead letters,
        task age p99, lease expirations and retries per minute, breakers."""
        since = now_ms - hours * 3_600_000
        window = now_ms - RATE_WINDOW_MS
        with self._connection() as conn:
            by_status = conn.execute("SELECT status, count(*) AS runs FROM runs GROUP BY status").fetchall()
            per_hour = conn.execute(
                "SELECT submitted_ms / 3600000 AS hour, status, count(*) AS runs FROM runs"
                " WHERE submitted_ms >= %s GROUP BY 1, 2 ORDER BY 1", (since,)).fetchall()
            letters = conn.execute("SELECT count(*) AS open FROM dead_letters WHERE status = 'open'").fetchone()
            age = conn.execute(
                "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY %s - first_ready_ms) AS p99,"
                " count(*) AS waiting FROM tasks WHERE status IN ('ready', 'leased', 'backoff')"
                " AND first_ready_ms IS NOT NULL", (now_ms,)).fetchone()
            rates = conn.execute(
                "SELECT status, count(*) AS n FROM attempts WHERE status IN ('expired', 'failed')"
                " AND ended_ms >= %s GROUP BY status", (window,)).fetchall()
            breakers = conn.execute("SELECT * FROM breakers ORDER BY tool").fetchall()
            spend = conn.execute(  # governance (docs/governance.md): usage of the runs of the window
                "SELECT system, sum(tokens) AS tokens, sum(cost_micros) AS cost_micros FROM runs"
                " WHERE submitted_ms >= %s AND (tokens > 0 OR cost_micros > 0) GROUP BY system ORDER BY 3 DESC, 2 DESC",
                (since,)).fetchall()
            asking = conn.execute(
                "SELECT count(*) AS n, max(%s - waiting_since_ms) AS oldest FROM tasks"
                " WHERE status = 'awaiting_approval'", (now_ms,)).fetchone()
        counted = {r["status"]: r["n"] for r in rates}
        minutes = RATE_WINDOW_MS / MINUTE_MS
        return {
            "runs_by_status": {r["status"]: r["runs"] for r in by_status},
            "runs_per_hour": [{"hour_ms": r["hour"] * 3_600_000, "status": r["status"], "runs": r["runs"]}
                              for r in per_hour],
            "open_dead_letters": letters["open"] if letters else 0,
            "task_age_p99_ms": None if age is None or age["p99"] is None else round(age["p99"]),
            "tasks_waiting": age["waiting"] if age else 0,
            "lease_expirations_per_minute": round(counted.get("expired", 0) / minutes, 2),
            "retries_per_minute": round(counted.get("failed", 0) / minutes, 2),
            "breakers": breakers,
            "spend": {"tokens": sum(int(r["tokens"]) for r in spend),
                      "cost": format_cost(sum(int(r["cost_micros"]) for r in spend)),
                      "by_system": [{"system": r["system"], "tokens": int(r["tokens"]),
                                     "cost": format_cost(int(r["cost_micros"]))} for r in spend]},
            "pending_approvals": asking["n"] if asking else 0,
            "oldest_approval_ms": asking["oldest"] if asking else None,
        }

    # ------------------------------------------------------------ dead letters

    def dead_letters(self, where: DeadLetterFilter, limit: int = 500) -> list[Row]:
        return self._all(
            "SELECT d.*, (SELECT count(*) FROM tasks b WHERE b.run_id = d.run_id AND b.blocked_by = d.task"
            "  AND b.status = 'blocked') AS blocked FROM dead_letters d"
            " WHERE (%s OR d.status = 'open') AND (%s::text IS NULL OR d.system = %s)"
            " AND (%s::text IS NULL OR strpos(lower(d.error), lower(%s)) > 0)"
            " ORDER BY d.dead_lettered_ms, d.run_id, d.task LIMIT %s",
            (where.include_replayed, where.system, where.system, where.error_contains, where.error_contains, limit),
        )

    def dead_letter(self, run_id: str, task: str) -> Row:
        """A dead letter with its attempts, tool journal and the run's tasks (for what it unblocks)."""
        with self._connection() as conn:
            letter = conn.execute("SELECT * FROM dead_letters WHERE run_id = %s AND task = %s",
                                  (run_id, task)).fetchone()
            if letter is None:
                raise NotFound(f"no dead letter {run_id}/{task} in the read model")
            attempts = conn.execute("SELECT * FROM attempts WHERE run_id = %s AND task = %s ORDER BY epoch",
                                    (run_id, task)).fetchall()
            calls = conn.execute("SELECT * FROM tool_calls WHERE run_id = %s AND task = %s"
                                 " ORDER BY call_index, epoch", (run_id, task)).fetchall()
            tasks = conn.execute("SELECT task, status, dependencies, blocked_by FROM tasks WHERE run_id = %s"
                                 " ORDER BY position", (run_id,)).fetchall()
        return {"dead_letter": letter, "attempts": attempts, "tool_calls": calls, "tasks": tasks}

    def tasks_of(self, run_ids: list[str]) -> dict[str, list[Row]]:
        rows = self._all("SELECT run_id, task, status, dependencies, blocked_by FROM tasks"
                         " WHERE run_id = ANY(%s) ORDER BY run_id, position", (run_ids,))
        out: dict[str, list[Row]] = {}
        for row in rows:
            out.setdefault(row["run_id"], []).append(row)
        return out
