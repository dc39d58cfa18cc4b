"""Read-model retention: delete finished runs older than a cut-off, with their tasks,
attempts, tool calls and dead letters, in small batches.

Each batch is one short transaction that takes the projector's shared advisory lock
(a schema swap waits for it, batches of the projector do not) and locks only the runs
it deletes (``SKIP LOCKED``), so the projector and the console are never held up for
long. The log stays the archive: ``taskplane rebuild projections --from-time`` brings
pruned runs back.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from taskplane.processors.projector.schema import SWAP_LOCK

_CHILDREN = ("tool_calls", "attempts", "dead_letters", "tasks")  # tasks last: it references runs


@dataclass(slots=True)
class PruneReport:
    runs: int = 0
    batches: int = 0


def prune_finished_runs(
    conn: psycopg.Connection[object], finished_before_ms: int, batch_size: int = 500, max_batches: int | None = None
) -> PruneReport:
    """Delete runs that finished before ``finished_before_ms`` (log time), oldest first.
    Stops when none is left or after ``max_batches``."""
    report = PruneReport()
    while max_batches is None or report.batches < max_batches:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (SWAP_LOCK,))
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE finished_ms < %s AND status <> 'running'"
                " ORDER BY finished_ms LIMIT %s FOR UPDATE SKIP LOCKED",
                (finished_before_ms, batch_size),
            ).fetchall()
            run_ids = [row[0] for row in rows]  # type: ignore[index]
            if not run_ids:
                break
            for table in _CHILDREN:
                conn.execute(sql.SQL("DELETE FROM {} WHERE run_id = ANY(%s)").format(sql.Identifier(table)), (run_ids,))
            conn.execute("DELETE FROM runs WHERE run_id = ANY(%s)", (run_ids,))
        report.runs += len(run_ids)
        report.batches += 1
    return report
