"""The demo's budget: a research run whose two agents loop on a metered model tool in
parallel until the run's budget (300 tokens) stops it: ``RunFailed budget_exceeded``
with its usage, and no call started past it but those already running
(docs/governance.md).

``llm.draft`` returns its usage in the documented form (``taskplane_usage``) and counts
its executions in ``demo_drafts``, so the summary can say how many calls ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from taskplane._examples.db import database_url
from taskplane.contract import messages as m
from taskplane.contract.governance import format_cost
from taskplane.workers.sdk import AgentContext, agent, tool

SYSTEM = "research-budget"
TOKENS_PER_DRAFT = 25
BUDGET = 300
MANIFEST = f"""
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: {SYSTEM}}}
spec:
  agents:
    - {{name: researcher, model: demo-llm, tools: [llm.draft]}}
    - {{name: reviewer, model: demo-llm, tools: [llm.draft]}}
  execution: {{leaseTimeout: 2s, maxRetries: 3, initialBackoff: 250ms, maxBackoffCap: 2s}}
  policy: {{maxTokensPerRun: {BUDGET}, maxCostPerRun: "1.00", allowedModels: [demo-llm], blockedTools: [shell.exec]}}
"""
DRAFTS = "CREATE TABLE IF NOT EXISTS demo_drafts (run_id text NOT NULL, task text NOT NULL, step bigint NOT NULL)"


@tool("llm.draft", env=("TASKPLANE_DATABASE_URL",))
def draft(run_id: str, task: str, step: int) -> dict[str, Any]:
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(DRAFTS)
        conn.execute("INSERT INTO demo_drafts VALUES (%s, %s, %s)", (run_id, task, step))
    return {"result": f"draft {step}", "taskplane_usage": {"tokens": TOKENS_PER_DRAFT, "cost": "0.0025",
                                                           "model": "demo-llm"}}


def _loop(ctx: AgentContext) -> dict[str, Any]:
    drafts = [ctx.call_tool("llm.draft", run_id=ctx.run_id, task=ctx.task, step=i) for i in range(100)]
    return {"drafts": len(drafts)}  # never reached: the budget stops the run first


@agent("researcher")
def researcher(ctx: AgentContext) -> dict[str, Any]:
    return _loop(ctx)


@agent("reviewer")
def reviewer(ctx: AgentContext) -> dict[str, Any]:
    return _loop(ctx)


class BudgetScene:
    """Says when the run is stopped by its budget; at the end, checks it was."""

    def __init__(self, say: Callable[[str], None], log: Any, run_id: str, database: str) -> None:
        self.say, self.log, self.run_id, self.database = say, log, run_id, database
        self.told = False

    def step(self) -> None:
        if self.told:
            return
        failed = self.log.events(m.RunFailed, self.run_id)
        if failed:
            self.told = True
            stop = failed[-1]
            self.say(f"[bold cyan]budget[/]: research {self.run_id[:8]} stopped: {stop.reason} after "
                     f"{stop.tokens} tokens (budget {BUDGET}), cost {format_cost(stop.cost_micros)}; "
                     f"{len(stop.holders)} attempt(s) in flight told to stop")

    def problem(self) -> str | None:
        """Why the budget did not stop the run as it should, or None."""
        failed = self.log.events(m.RunFailed, self.run_id)
        if not failed or failed[-1].reason != "budget_exceeded":
            return f"research {self.run_id[:8]} was not stopped by its budget"
        with psycopg.connect(self.database, autocommit=True) as conn:
            conn.execute(DRAFTS)
            row = conn.execute("SELECT count(*) FROM demo_drafts WHERE run_id = %s", (self.run_id,)).fetchone()
        ran, allowed = (row[0] if row else 0), BUDGET // TOKENS_PER_DRAFT
        if ran > allowed + 1:  # one call may have been running in the other attempt when it was crossed
            return f"research {self.run_id[:8]}: llm.draft ran {ran} times, the budget allows {allowed} (+1 in flight)"
        self.say(f"budget: llm.draft ran {ran} times for a budget of {allowed} calls; the run failed budget_exceeded")
        return None
