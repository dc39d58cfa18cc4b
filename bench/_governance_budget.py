"""The budget measures of ``bench.governance``: many runs of a system whose two agents
loop on a metered tool in parallel (80 calls wanted, a budget of 20), some of them first
calling a tool the policy blocks.

- ``budget_overshoot_calls_max``: over every run, the most tool calls that *started*
  after the run's usage reached its budget (the call whose end reached it, in the
  tools' own clock). Calls already running then are the bound the design allows, not
  overshoot. Target <= 1.
- ``blocked_calls``: executions of the blocked tool. Target 0.
- ``budget_runs_stopped``: runs that ended failed with ``budget_exceeded`` (all of them).
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench._governance_budget_tools import TOKENS_PER_CALL
from bench._governance_stack import GovernanceStack

TOOLS = str(Path(__file__).resolve().parent / "_governance_budget_tools.py")
BUDGET_TOKENS = 200
MANIFEST = f"""
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: bench-budget}}
spec:
  agents:
    - {{name: left, model: bench-model, tools: [bench.model, bench.shell]}}
    - {{name: right, model: bench-model, tools: [bench.model]}}
  execution: {{leaseTimeout: 10s, deadLetterTransition: false}}
  policy:
    maxTokensPerRun: {BUDGET_TOKENS}
    maxCostPerRun: "1000"
    allowedModels: [bench-model]
    blockedTools: [bench.shell]
"""


def _calls(directory: Path) -> list[tuple[str, str, str, int, int]]:
    rows = []
    for path in directory.glob("calls-*.tsv"):
        for line in path.read_text().splitlines():
            run_id, task, tool, started, ended = line.split("\t")
            rows.append((run_id, task, tool, int(started), int(ended)))
    return rows


def overshoot(calls: list[tuple[int, int]], budget_calls: int) -> int:
    """Calls (start, end) that started after the call whose end reached the budget."""
    if len(calls) < budget_calls:
        return 0
    crossed = sorted(end for _start, end in calls)[budget_calls - 1]
    return sum(1 for start, _end in calls if start > crossed)


def measure(kafka: dict[str, Any], quick: bool) -> dict[str, Any]:
    runs = 16 if quick else 120
    directory = Path(tempfile.mkdtemp(prefix="taskplane-bench-budget-"))
    with GovernanceStack(kafka, MANIFEST, TOOLS, env={"BENCH_GOVERNANCE_DIR": str(directory)}) as stack:
        started = time.monotonic()
        run_ids = stack.submit_many([{"blocked": i % 4 == 0, "i": i} for i in range(runs)])
        infos = stack.finish(run_ids, timeout_s=300)
        took = time.monotonic() - started
    by_run: dict[str, list[tuple[int, int]]] = defaultdict(list)
    blocked = 0
    for run_id, _task, tool, start, end in _calls(directory):
        if tool == "bench.shell":
            blocked += 1
        else:
            by_run[run_id].append((start, end))
    budget_calls = BUDGET_TOKENS // TOKENS_PER_CALL
    overshoots = [overshoot(by_run[run_id], budget_calls) for run_id in run_ids]
    reasons = [infos[run_id].reason or "" for run_id in run_ids]
    stopped = sum(1 for reason in reasons if reason == "budget_exceeded")
    refused = sum(1 for reason in reasons if "tool_blocked" in reason)
    executed = [len(by_run[run_id]) for run_id in run_ids]
    print(f"  budget: {runs} runs in {took:.1f}s, {stopped} stopped by the budget, {refused} by a blocked tool; "
          f"calls executed per run {min(executed)}..{max(executed)} (budget {budget_calls}), "
          f"overshoot max {max(overshoots)}, blocked calls {blocked}", flush=True)
    return {
        "budget_runs": runs,
        "budget_runs_stopped": stopped,
        "blocked_runs_refused": refused,
        "budget_overshoot_calls_max": max(overshoots),
        "budget_overshoot_calls_mean": round(sum(overshoots) / runs, 2),
        "budget_calls_executed_max": max(executed),
        "blocked_calls": blocked,
    }
