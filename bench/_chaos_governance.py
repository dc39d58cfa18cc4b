"""bench.chaos's governance part: runs of a second system that either loop on a metered
model tool until their budget stops them, or issue one refund that waits for a person.
A person (the approver thread here) grants each request through the public client,
signed with the stack's approval key, while every component is killed with the rest.

Checked at the end from the tools' own records (bench/_chaos_governed_tools.py):
- ``budget_runs_stopped`` of ``budget_runs``: each ended failed, ``budget_exceeded``;
- ``budget_overshoot_calls_max``: the most model calls of one run that started after
  the call whose end reached its budget (calls already running then are the bound the
  design allows, docs/governance.md); at most 1;
- ``refunds_succeeded`` of ``refund_runs``; ``refunds_missing``: granted refunds whose
  call never ran; ``refunds_unapproved``: executions that started before the
  orchestrator recorded their grant (the same host's clock), or without one;
  ``refund_repeats``: executions past a key's first, reported, not failed: a worker
  killed between a call and its record runs it again in the next attempt, which is why
  the tool gets the call's idempotency key (as fakepay's charge does).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench._chaos_checks import ended, wait_ended
from bench._chaos_governed_tools import TOKENS_PER_CALL
from taskplane import Client
from taskplane.contract.messages import (
    ApprovalGranted,
    ApprovalRequested,
    RunFailed,
    RunSucceeded,
    SubmitRun,
)
from taskplane.streams.publisher import run_id_for
from taskplane.testing import compile_manifest

TOOLS = str(Path(__file__).resolve().parent / "_chaos_governed_tools.py")
BUDGET_TOKENS = 100
MANIFEST = f"""
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: chaos-governed}}
spec:
  agents:
    - name: governed
      model: chaos-model
      tools:
        - gov.model: {{timeout: 5s}}
        - gov.refund: {{timeout: 5s, approval: required, operation: write}}
  execution: {{leaseTimeout: 10s, maxRetries: 5, initialBackoff: 200ms, backoffMultiplier: 2.0,
              maxBackoffCap: 2s, jitterFraction: 0.1, idempotencyTracking: true}}
  policy: {{maxTokensPerRun: {BUDGET_TOKENS}, allowedModels: [chaos-model]}}
"""
DEFINITION = compile_manifest(MANIFEST)
APPROVAL_KEY = secrets.token_hex(16)  # the stack's orchestrators hold it; workers drop it


class Governed:
    """Submits governed runs (budget and refund, in turns) and approves refunds as a person."""

    def __init__(self, stack: Any, per_second: float) -> None:
        self.stack = stack
        self.directory = Path(tempfile.mkdtemp(prefix="taskplane-chaos-governed-"))
        stack.env["CHAOS_GOVERNED_DIR"] = str(self.directory)
        self.runs: dict[str, str] = {}  # run id -> mode
        self._pause = 1 / per_second
        self._stopped = threading.Event()
        self._granted: set[str] = set()
        self._client = Client(stack.kafka["bootstrap.servers"], topic_prefix=stack.topics.prefix,
                              kafka_options={k: v for k, v in stack.kafka.items() if k != "bootstrap.servers"})
        self._threads = [threading.Thread(target=self._submit, daemon=True),
                         threading.Thread(target=self._approve, daemon=True)]

    def define(self) -> None:
        self.stack.publisher.define_system(DEFINITION)
        self.stack.publisher.flush()

    def start(self) -> Governed:
        for thread in self._threads:
            thread.start()
        return self

    def stop_submitting(self) -> None:
        self._stopped.set()

    def _submit(self) -> None:
        index = 0
        while not self._stopped.is_set():
            mode = "refund" if index % 2 else "budget"
            key = f"chaos-governed-{index}"
            run_id = run_id_for(DEFINITION.name, key)
            self.runs[run_id] = mode
            self.stack.publisher.publish(SubmitRun(run_id, DEFINITION.plan, json.dumps({"mode": mode, "amount": index}),
                                                   key))
            self.stack.publisher.flush(300)
            index += 1
            self._stopped.wait(self._pause)

    def _approve(self) -> None:
        """A person at a console: every request seen on the log is granted, again after
        a failed try (the orchestrator or the broker may be down)."""
        while True:
            for request in self.stack.log.events(ApprovalRequested):
                if request.approval_id in self._granted or request.run_id not in self.runs:
                    continue
                with contextlib.suppress(Exception):  # down now: the next round tries again
                    self._client.approve(request.approval_id, who="chaos-person", reason="chaos",
                                         run_id=request.run_id, key=APPROVAL_KEY, timeout=10)
                    self._granted.add(request.approval_id)
            if self._stopped.is_set() and ended(self.stack.log, list(self.runs)):
                return
            time.sleep(0.5)

    def finish(self, failures: list[str], wait_s: float = 180.0) -> dict[str, Any]:
        """After the load: every governed run's end, then the checks."""
        wait_ended(self.stack.log, list(self.runs), wait_s)
        self._threads[1].join(5)
        self._client.close()
        return self._check(failures)

    def _check(self, failures: list[str]) -> dict[str, Any]:
        log = self.stack.log
        succeeded = {e.run_id for e in log.events(RunSucceeded)}
        failed = {e.run_id: e.reason for e in log.events(RunFailed)}
        granted_at = {e.approval_id: e.at_ms for e in log.events(ApprovalGranted)}
        calls: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        refunds: dict[str, list[float]] = defaultdict(list)
        for path in self.directory.glob("calls-*.tsv"):
            for line in path.read_text().splitlines():
                tool, run_id, key, started, ended = line.split("\t")
                if tool == "gov.refund":
                    refunds[key].append(float(started))
                else:
                    calls[run_id][key].append((float(started), float(ended)))
        budget = [r for r, mode in self.runs.items() if mode == "budget"]
        refund = [r for r, mode in self.runs.items() if mode == "refund"]
        overshoots = [_overshoot(calls[run_id], BUDGET_TOKENS // TOKENS_PER_CALL) for run_id in budget]
        figures = {
            "budget_runs": len(budget),
            "budget_runs_stopped": sum(1 for r in budget if failed.get(r) == "budget_exceeded"),
            "budget_overshoot_calls_max": max(overshoots, default=0),
            "refund_runs": len(refund),
            "refunds_succeeded": sum(1 for r in refund if r in succeeded),
            "approvals_granted": len(self._granted),
            "refunds_missing": sum(1 for key in granted_at if not refunds.get(key)),
            "refund_repeats": sum(len(starts) - 1 for starts in refunds.values()),
            "refunds_unapproved": sum(1 for key, starts in refunds.items()
                                      for start in starts if key not in granted_at or start < granted_at[key]),
        }
        if figures["budget_runs_stopped"] != figures["budget_runs"]:
            failures.append(f"governance: {figures['budget_runs'] - figures['budget_runs_stopped']} budget runs "
                            "not stopped by their budget")
        if figures["budget_overshoot_calls_max"] > 1:
            failures.append(f"governance: {figures['budget_overshoot_calls_max']} calls past a run's budget")
        if figures["refunds_succeeded"] != figures["refund_runs"]:
            failures.append(f"governance: {figures['refund_runs'] - figures['refunds_succeeded']} refund runs "
                            "did not succeed")
        for name in ("refunds_missing", "refunds_unapproved"):
            if figures[name]:
                failures.append(f"governance: {name} = {figures[name]}")
        return figures


def _overshoot(by_key: dict[str, list[tuple[float, float]]], budget_calls: int) -> int:
    """Calls (a key's first execution) that started after the call whose end reached the budget."""
    first = sorted(min(runs) for runs in by_key.values())
    if len(first) < budget_calls:
        return 0
    crossed = sorted(end for _start, end in first)[budget_calls - 1]
    return sum(1 for start, _end in first if start > crossed)
