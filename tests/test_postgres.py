"""The session's Postgres: a real server, reachable, one fresh database per test."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.postgres


def test_round_trip(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE runs (run_id text PRIMARY KEY, state text NOT NULL)")
        conn.execute("INSERT INTO runs VALUES (%s, %s)", ("run-1", "running"))
        row = conn.execute("SELECT state FROM runs WHERE run_id = %s", ("run-1",)).fetchone()
    assert row == ("running",)


def test_fresh_database_is_empty_and_separate(fresh_database: str, database_url: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert name is not None and name[0] != "postgres"
    assert tables == (0,)
