"""bench.chaos's fan part: runs of a diamond (order → charge ‖ reserve → ship) whose
tasks each perform one side effect, so the speculative follow-ons of docs/workers.md
(a worker starting the children its completion readies before their grant arrives) run
through every kill with the rest.

Checked at the end from the tools' own records (bench/_chaos_fan_tools.py):
- ``fan_runs_succeeded`` of ``fan_runs``: every run ends succeeded;
- ``fan_effects_missing``: tasks of a succeeded run whose effect never ran;
- ``fan_order_violations``: an effect that started before every execution of one of
  its task's dependencies had ended (a child run ahead of an upstream task that had not
  succeeded);
- ``fan_effect_repeats``: executions past a key's first, reported, not failed: a worker
  killed between a call and its record, or a child run ahead of a completion the
  orchestrator refused (its lease had expired), runs it again in the next attempt;
- ``fan_started_ahead_at_least``: tasks the workers that were stopped, not killed,
  started ahead of their grant (each worker logs its count when it stops).
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench._chaos_checks import wait_ended
from taskplane.contract.messages import RunSucceeded, SubmitRun, TaskSucceeded
from taskplane.streams.publisher import run_id_for
from taskplane.testing import compile_manifest

TOOLS = str(Path(__file__).resolve().parent / "_chaos_fan_tools.py")
MANIFEST = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: chaos-fan}
spec:
  agents:
    - {name: order, tools: [fan.effect]}
    - {name: charge, dependencies: [order], tools: [fan.effect]}
    - {name: reserve, dependencies: [order], tools: [fan.effect]}
    - {name: ship, dependencies: [charge, reserve], tools: [fan.effect]}
  execution: {leaseTimeout: 10s, maxRetries: 5, initialBackoff: 200ms, backoffMultiplier: 2.0,
              maxBackoffCap: 2s, jitterFraction: 0.1, idempotencyTracking: true}
"""
DEFINITION = compile_manifest(MANIFEST)
AHEAD = re.compile(r"(\d+) task\(s\) started ahead of their grant")


class Fan:
    """Submits fan runs at a steady rate; checks what their tasks really did."""

    def __init__(self, stack: Any, per_second: float) -> None:
        self.stack = stack
        self.directory = Path(tempfile.mkdtemp(prefix="taskplane-chaos-fan-"))
        stack.env["CHAOS_FAN_DIR"] = str(self.directory)
        self.runs: list[str] = []
        self._pause = 1 / per_second
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._submit, daemon=True)

    def define(self) -> None:
        self.stack.publisher.define_system(DEFINITION)
        self.stack.publisher.flush()

    def start(self) -> Fan:
        self._thread.start()
        return self

    def stop_submitting(self) -> None:
        self._stopped.set()
        self._thread.join(30)

    def _submit(self) -> None:
        index = 0
        while not self._stopped.is_set():
            key = f"chaos-fan-{index}"
            run_id = run_id_for(DEFINITION.name, key)
            self.runs.append(run_id)
            self.stack.publisher.publish(SubmitRun(run_id, DEFINITION.plan, json.dumps({"n": index}), key))
            self.stack.publisher.flush(300)
            index += 1
            self._stopped.wait(self._pause)

    def finish(self, failures: list[str], wait_s: float = 180.0) -> dict[str, Any]:
        """After the load: every fan run's end, then the checks."""
        wait_ended(self.stack.log, list(self.runs), wait_s)
        return self._check(failures)

    def _check(self, failures: list[str]) -> dict[str, Any]:
        log = self.stack.log
        wanted = set(self.runs)
        succeeded = {e.run_id for e in log.events(RunSucceeded)} & wanted
        runs: dict[str, dict[str, list[tuple[str, float, float]]]] = defaultdict(lambda: defaultdict(list))
        for path in self.directory.glob("effects-*.tsv"):
            for line in path.read_text().splitlines():
                task, run_id, key, start, end = line.split("\t")
                runs[run_id][task].append((key, float(start), float(end)))
        tasks = [agent.name for agent in DEFINITION.plan.agents]
        missing = sum(1 for run_id in succeeded for task in tasks if not runs[run_id].get(task))
        repeats = sum(len(executions) - len({key for key, _s, _e in executions})
                      for by_task in runs.values() for executions in by_task.values())
        order = 0
        for by_task in runs.values():
            for agent in DEFINITION.plan.agents:
                for _key, began, _end in by_task.get(agent.name, []):
                    for dep in agent.dependencies:
                        ends = [ended for _k, _s, ended in by_task.get(dep, [])]
                        if not ends or began < min(ends):
                            order += 1
        doubled = sum(1 for run_id in succeeded for task in tasks
                      if sum(1 for e in log.events(TaskSucceeded, run_id) if e.task == task) != 1)
        figures = {
            "fan_runs": len(wanted), "fan_runs_succeeded": len(succeeded), "fan_effects_missing": missing,
            "fan_order_violations": order, "fan_tasks_not_succeeded_once": doubled,
            "fan_effect_repeats": repeats,
        }
        if figures["fan_runs_succeeded"] != figures["fan_runs"]:
            failures.append(f"fan: {len(wanted) - len(succeeded)} runs did not succeed")
        for name in ("fan_effects_missing", "fan_order_violations", "fan_tasks_not_succeeded_once"):
            if figures[name]:
                failures.append(f"fan: {name} = {figures[name]}")
        return figures


def started_ahead(workdir: Path) -> int:
    """Tasks started ahead of their grant, as the workers stopped (not killed) logged them."""
    total = 0
    for path in workdir.glob("w*.log"):
        with contextlib.suppress(OSError):
            total += sum(int(m.group(1)) for m in AHEAD.finditer(path.read_text(errors="replace")))
    return total
