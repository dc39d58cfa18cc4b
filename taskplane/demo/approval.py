"""The demo's approval: a refund that waits for a person, granted by the demo script
through the CLI (``taskplane approvals approve ID --as ... --reason ...``) as a person
would, with the approval key only the CLI and the orchestrator hold.

``refund-desk`` has one agent whose ``refund.issue`` requires approval; the tool counts
its executions in ``demo_refunds`` so the summary can say it ran once.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from taskplane._examples.db import database_url
from taskplane.contract import messages as m
from taskplane.contract.approvals import APPROVAL_KEY_ENV
from taskplane.workers.sdk import AgentContext, agent, tool

SYSTEM = "refund-desk"
MANIFEST = f"""
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: {SYSTEM}}}
spec:
  agents:
    - name: refunder
      tools:
        - refund.issue: {{approval: {{required: true, ttl: 2m}}, operation: write}}
  execution: {{leaseTimeout: 2s, maxRetries: 3, initialBackoff: 250ms, maxBackoffCap: 2s}}
"""
REFUNDS = "CREATE TABLE IF NOT EXISTS demo_refunds (key text NOT NULL, run_id text NOT NULL, amount bigint NOT NULL)"


@tool("refund.issue", env=("TASKPLANE_DATABASE_URL",))
def issue(amount: int, run_id: str, idempotency_key: str) -> dict[str, Any]:
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(REFUNDS)
        conn.execute("INSERT INTO demo_refunds VALUES (%s, %s, %s)", (idempotency_key, run_id, amount))
    return {"refunded": amount}


@agent("refunder")
def refunder(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("refund.issue", amount=int(ctx.run_input["amount"]), run_id=ctx.run_id)
    return result


@contextmanager
def approval_key() -> Iterator[str]:
    """A fresh key for this demo: the orchestrator (in this process) and the CLI get it;
    the worker processes drop it (``workers/approvals.py``)."""
    key = secrets.token_hex(16)
    before = os.environ.get(APPROVAL_KEY_ENV)
    os.environ[APPROVAL_KEY_ENV] = key
    try:
        yield key
    finally:
        if before is None:
            os.environ.pop(APPROVAL_KEY_ENV, None)
        else:
            os.environ[APPROVAL_KEY_ENV] = before


class ApprovalScene:
    """When the refund asks, approve it through the CLI; at the end, check it ran once."""

    def __init__(self, say: Callable[[str], None], log: Any, run_id: str, bootstrap: str, prefix: str,
                 database: str) -> None:
        self.say, self.log, self.run_id = say, log, run_id
        self.bootstrap, self.prefix, self.database = bootstrap, prefix, database
        self.approved = False

    def step(self) -> None:
        if self.approved:
            return
        asked = self.log.events(m.ApprovalRequested, self.run_id)
        if not asked:
            return
        request = asked[-1]
        self.approved = True
        self.say(f"[bold cyan]approval[/]: refund {self.run_id[:8]} asks to run {request.tool} "
                 f"{request.input_preview}; its task holds no worker while it waits")
        command = ["taskplane", "approvals", "approve", request.approval_id, "--as", "demo-operator",
                   "--reason", "refund matches the returned order"]
        self.say(f"$ {' '.join(command)}")
        env = {**os.environ, "TASKPLANE_BOOTSTRAP_SERVERS": self.bootstrap, "TASKPLANE_TOPIC_PREFIX": self.prefix}
        done = subprocess.run([sys.executable, "-m", "taskplane.cli", *command[1:]], env=env, capture_output=True,
                              text=True, timeout=60)
        self.say((done.stdout + done.stderr).strip())

    def problem(self) -> str | None:
        """Why the approval did not go as it should, or None."""
        granted = self.log.events(m.ApprovalGranted, self.run_id)
        if not granted or granted[-1].who != "demo-operator":
            return f"refund {self.run_id[:8]} was not granted by demo-operator"
        with psycopg.connect(self.database, autocommit=True) as conn:
            conn.execute(REFUNDS)
            row = conn.execute("SELECT count(*) FROM demo_refunds WHERE run_id = %s", (self.run_id,)).fetchone()
        runs = row[0] if row else 0
        if runs != 1 or not self.log.events(m.RunSucceeded, self.run_id):
            return f"refund {self.run_id[:8]}: refund.issue ran {runs} times (want once, after the grant)"
        self.say(f"approval: granted by {granted[-1].who} through the CLI; refund.issue ran once after it")
        return None
