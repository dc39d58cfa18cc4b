"""Read-model schema: versioned, forward-only SQL migrations applied at start.

Each Postgres schema (``readmodel``, or a ``readmodel_rebuild_*`` being built) has its
own ``schema_migrations`` table; ``migrate`` applies the missing files of
``migrations/`` in order, in one transaction, under an advisory lock so two starting
projectors do not race.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from psycopg import sql

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LIVE_SCHEMA = "readmodel"
SWAP_LOCK = 7_461_001  # advisory lock: one batch or one schema swap at a time
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: migration files are named NNNN_what.sql")
        found.append((int(match.group(1)), path))
    return found


def migrate(conn: psycopg.Connection[object], schema: str = LIVE_SCHEMA) -> list[int]:
    """Bring ``schema`` to the newest version; returns the versions applied now."""
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SWAP_LOCK,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
        done = {row[0] for row in rows}  # type: ignore[index]
        for version, path in migration_files():
            if version in done:
                continue
            conn.execute(path.read_text())  # type: ignore[arg-type]
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, path.name)
            )
            applied_now.append(version)
    return applied_now


def connect(dsn: str, schema: str = LIVE_SCHEMA, autocommit: bool = False) -> psycopg.Connection[object]:
    """A connection whose unqualified names resolve in ``schema``. Statements are never
    server-prepared: a schema swap must re-resolve names on the next statement."""
    conn: psycopg.Connection[object] = psycopg.connect(
        dsn, autocommit=autocommit, prepare_threshold=None, options=f"-c search_path={schema}"
    )
    return conn


def schema_exists(conn: psycopg.Connection[object], schema: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return row is not None
