"""The examples' database URL: TASKPLANE_DATABASE_URL, else the running dev stack."""

from __future__ import annotations

import os


def database_url() -> str:
    url = os.environ.get("TASKPLANE_DATABASE_URL")
    if url:
        return url
    from streams.devstack import resolve_endpoints

    return resolve_endpoints().database_url
