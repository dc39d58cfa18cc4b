"""Approvals under load, on the real broker with real worker processes (issue 26).

``measure(kafka, quick=..., workers=4)`` returns:
- ``unapproved_calls``: executions of an approval-required tool without a grant before
  them (calls that ran while waiting, and calls of denied or expired approvals);
- ``approved_calls_executed_once``: every granted call ran exactly once, including one
  whose worker was SIGKILLed between the grant and the call;
- ``approval_timeouts_failed``: every request nobody answered failed its task
  ``approval_timeout``, running nothing;
- ``approval_to_resume_p50_ms`` / ``_p99_ms``: from a person's decision (its signed time)
  to the tool's start in the resumed attempt, one approval at a time (quiet).

``python -m bench._governance_approvals [--quick]`` runs it alone (last line JSON);
``bench.governance`` calls ``measure``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench._stack import bench_stack
from taskplane.client import Client
from taskplane.contract import messages as m
from taskplane.contract.approvals import APPROVAL_KEY_ENV
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import EventLog, ProcessorThreads, compile_manifest

TOOLS = str(Path(__file__).resolve().parent / "_governance_approval_tools.py")
SYSTEM = "bench-approvals"
MANIFEST = f"""
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: {SYSTEM}}}
spec:
  agents:
    - name: payer
      tools:
        - pay.charge: {{approval: required, operation: write}}
        - pay.quick: {{approval: {{required: true, ttl: 2s}}, operation: write}}
  execution: {{leaseTimeout: 2s, maxRetries: 3, initialBackoff: 100ms, maxBackoffCap: 1s}}
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else -1.0


class _Stack:
    def __init__(self, kafka: dict[str, Any], workers: int, key: str, tmp: Path) -> None:
        self.kafka, self.tmp, self.key = kafka, tmp, key
        self.charges, self.pause = tmp / "charges.txt", tmp / "pause.flag"
        self.charges.touch()
        self.topics = Topics(f"benchappr{uuid.uuid4().hex[:6]}")
        ensure_topics(kafka_clients.admin(kafka), self.topics, catalog())
        self.publisher = Publisher(kafka, self.topics)
        self.definition = compile_manifest(MANIFEST)
        self.publisher.define_system(self.definition)
        self.publisher.flush()
        os.environ[APPROVAL_KEY_ENV] = key  # the orchestrator's (people's side); workers drop it
        self.processors = ProcessorThreads(kafka, self.topics, None).start()
        self.log = EventLog(kafka, self.topics.events)
        self.client = Client(kafka["bootstrap.servers"], topic_prefix=self.topics.prefix,
                             kafka_options={k: v for k, v in kafka.items() if k != "bootstrap.servers"})
        self.env = {k: v for k, v in os.environ.items() if k != APPROVAL_KEY_ENV}
        self.env.update({"TASKPLANE_BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
                         "TASKPLANE_TOPIC_PREFIX": self.topics.prefix,
                         "BENCH_APPROVAL_CHARGES": str(self.charges), "BENCH_APPROVAL_PAUSE": str(self.pause)})
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        for index in range(workers):
            self.start_worker(f"w{index}")

    def start_worker(self, name: str) -> None:
        command = [str(Path(sys.executable).parent / "taskplane"), "worker", "run", "--system", SYSTEM,
                   "--module", TOOLS, "--worker-id", name]
        self.workers[name] = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL,
                                              stderr=(self.tmp / f"{name}.log").open("ab"), start_new_session=True)

    def submit(self, runs: list[dict[str, Any]]) -> list[str]:
        ids = [self.publisher.submit_run(self.definition.plan, run) for run in runs]
        self.publisher.flush()
        return ids

    def wait(self, condition: Any, timeout_s: float) -> Any:
        return self.log.wait_for(condition, timeout_s, also=self.processors.check)

    def requested(self, run_ids: list[str]) -> dict[str, m.ApprovalRequested]:
        wanted = set(run_ids)
        self.wait(lambda log: len({e.run_id for e in log.events(m.ApprovalRequested)} & wanted) == len(wanted), 120)
        return {e.run_id: e for e in self.log.events(m.ApprovalRequested) if e.run_id in wanted}

    def executions(self) -> list[tuple[str, float]]:
        lines = [line.split() for line in self.charges.read_text().splitlines() if line.strip()]
        return [(key, float(start)) for key, start in lines]

    def close(self) -> None:
        for worker in self.workers.values():
            if worker.poll() is None:
                worker.terminate()
        for worker in self.workers.values():
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.processors.stop()
        self.client.close()
        self.log.close()
        os.environ.pop(APPROVAL_KEY_ENV, None)


def measure(kafka: dict[str, Any], quick: bool = False, workers: int = 4) -> dict[str, Any]:
    granted_runs, denied_runs, expiring_runs = (20, 4, 6) if quick else (100, 10, 20)
    with tempfile.TemporaryDirectory(prefix="taskplane-bench-approvals-") as tmp:
        stack = _Stack({**kafka, "log_level": 3}, workers, uuid.uuid4().hex, Path(tmp))
        try:
            return _measure(stack, granted_runs, denied_runs, expiring_runs)
        finally:
            stack.close()


def _measure(stack: _Stack, granted_runs: int, denied_runs: int, expiring_runs: int) -> dict[str, Any]:
    started = time.monotonic()
    asking = stack.submit([{"tool": "pay.charge", "amount": i} for i in range(granted_runs + denied_runs)])
    expiring = stack.submit([{"tool": "pay.quick", "amount": i} for i in range(expiring_runs)])
    requests = stack.requested(asking)
    ran_while_waiting = len(stack.executions())  # none may have run: nobody said yes yet

    # One person, one approval at a time: decision (signed time) -> the tool's start.
    resume_ms: list[float] = []
    granted_keys: set[str] = set()
    for run_id in asking[:granted_runs]:
        request = requests[run_id]
        info = stack.client.approve(request.approval_id, who="bench", reason="measured", run_id=run_id)
        granted_keys.add(request.approval_id)
        stack.wait(lambda log, key=request.approval_id: key in dict(stack.executions()), 60)
        assert info.decided_ms is not None
        resume_ms.append(dict(stack.executions())[request.approval_id] - info.decided_ms)
    for run_id in asking[granted_runs:]:
        stack.client.deny(requests[run_id].approval_id, "measured denial", who="bench", run_id=run_id)

    killed_once = _kill_between_grant_and_call(stack)
    finished = set(asking) | set(expiring)
    stack.wait(lambda log: finished <= {e.run_id for e in log.events(m.RunSucceeded)}
               | {e.run_id for e in log.events(m.TaskDeadLettered)}, 120)

    executions = Counter(key for key, _ in stack.executions())
    denied_keys = {requests[r].approval_id for r in asking[granted_runs:]}
    expired_keys = {e.approval_id for e in stack.log.events(m.ApprovalExpired)}
    timed_out = {e.run_id for e in stack.log.events(m.TaskDeadLettered) if e.error == "approval_timeout"}
    unapproved = ran_while_waiting + sum(executions[k] for k in denied_keys | expired_keys)
    return {
        "approval_runs": granted_runs + denied_runs + expiring_runs + 1,
        "approval_workers": len(stack.workers) - 1,
        "unapproved_calls": unapproved,
        "approved_calls_executed_once": killed_once and all(executions[k] == 1 for k in granted_keys),
        "approval_timeouts_failed": timed_out == set(expiring) and not any(executions[k] for k in expired_keys),
        "approval_to_resume_p50_ms": _percentile(resume_ms, 0.5),
        "approval_to_resume_p99_ms": _percentile(resume_ms, 0.99),
        "approval_seconds": round(time.monotonic() - started, 1),
    }


def _kill_between_grant_and_call(stack: _Stack) -> bool:
    """A granted attempt's worker SIGKILLed after the grant and before the call: the next
    attempt runs the call, once."""
    stack.pause.touch()
    (run_id,) = stack.submit([{"tool": "pay.charge", "amount": 999, "pause": True}])
    request = stack.requested([run_id])[run_id]
    stack.client.approve(request.approval_id, who="bench", reason="kill test", run_id=run_id)
    reached = stack.pause.with_suffix(".reached")
    stack.wait(lambda log: reached.exists(), 60)
    grants = [e for e in stack.log.events(m.LeaseGranted, run_id)]
    holder = grants[-1].worker_id
    os.killpg(stack.workers[holder].pid, signal.SIGKILL)
    stack.workers[holder].wait()
    stack.pause.unlink()
    stack.start_worker(f"{holder}-again")
    stack.wait(lambda log: log.events(m.RunSucceeded, run_id), 90)
    return Counter(key for key, _ in stack.executions())[request.approval_id] == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 runs instead of 130")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with bench_stack() as kafka:
        figures = measure(kafka, args.quick, args.workers)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
