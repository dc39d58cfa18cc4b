"""The examples' database URL: TASKPLANE_DATABASE_URL, else the running dev stack."""

from __future__ import annotations

import os
from typing import Any


def database_url() -> str:
    url = os.environ.get("TASKPLANE_DATABASE_URL")
    if url:
        return url
    from taskplane.devstack.stack import resolve_endpoints

    return resolve_endpoints().database_url


def ensure_table(conn: Any, name: str, ddl: str) -> None:
    """CREATE TABLE IF NOT EXISTS, serialized: concurrent first calls from several
    tool processes otherwise race in Postgres (a unique violation on pg_type)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"taskplane-examples:{name}",))
        conn.execute(ddl)
