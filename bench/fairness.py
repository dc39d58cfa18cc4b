"""Fair share and priority on the real broker, with the orchestrator, the dispatcher and
worker processes (docs/scheduling.md):

- ``small_tenant_p99_ms_solo``: tenant B's run latency p99 (RunSubmitted to RunSucceeded,
  log time) at 5 runs/s, alone;
- ``small_tenant_p99_ms_flooded``: the same while tenant A's flood (5,000 runs submitted
  at once) waits in the dispatcher; B's runs start once the flood is queued there
  (``flood_ingest_ms``: how long that took; ``flood_accepted_ms``: until the orchestrator
  had taken A's submits). Both are input queues no scheduler reorders: a run submitted
  behind the flood waits for the orchestrator, then the dispatcher, to read the 5,000
  before it (``bench._fairness_stages`` measured the dispatcher's reading up to ~1 s after
  the orchestrator's, which made B's first runs the flooded p99).
  ``..._flooded_with_ingest`` includes B's runs submitted during the ingest too;
- ``priority_p50_ms_high`` / ``priority_p50_ms_low``: a backlog of priority-1 runs, then
  priority-5 runs of the same tenant arriving at 5/s.

``--seconds`` lengthens B's phases (more samples for the p99: at 20 s it is the slowest of
B's 100 runs, ``percentile`` taking ``ordered[int(q * n)]``); the flood must outlast the flooded phase
(``flood_outlasted_phase``; on a quiet host A's 5,000 runs end ~50 s after B's start).
``--orchestrators 2`` runs the orchestrator as ``deploy/k8s/base`` does (2 replicas);
``--dump FILE`` writes B's latencies.

Targets: flooded / solo p99 <= 2; high p50 <= low p50 / 5. When ``bench/_fairness_limits.py``
exists (the tool rate-limit part of issue 27), its ``measure(...)`` keys are merged in.

    python -m bench.fairness [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._chaos_stack import Component
from bench._stack import bench_stack
from taskplane.contract.messages import RunSubmitted, RunSucceeded, SubmitRun
from taskplane.contract.plan import SystemPlan
from taskplane.contract.scheduling import OfferQueued
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import EventLog, WorkerProcess, compile_manifest, worker_env

TOOLS = str(Path(__file__).resolve().parent / "_fairness_tools.py")
MANIFEST = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: {name}}}
spec:
  agents:
    - name: step
      tools: [{{bench.work: {{timeout: 30s}}}}]
  execution: {{leaseTimeout: 20s}}
  scheduling:
    tenants: {{a: {{weight: 1}}, b: {{weight: 1}}, p: {{weight: 1}}}}
    priorityAging: 120s
    window: {window}
"""
TASK_S = 0.05
WORKERS, CONCURRENCY = 2, 4
# The fleet's slots: a slot that frees finds an item waiting (no dispatcher round trip in
# between), and a newcomer's item has at most one round of tasks ahead of it on `work`
# (half the slots measured slower on this host: 326 flood runs done instead of 711).
WINDOW = WORKERS * CONCURRENCY


def percentile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


class Bench:
    def __init__(self, kafka: dict[str, Any], workdir: Path, orchestrators: int = 1) -> None:
        self.kafka, self.workdir = kafka, workdir
        self.topics = Topics(f"fair{uuid.uuid4().hex[:6]}")
        ensure_topics(kafka_clients.admin(kafka), self.topics, catalog())
        self.publisher = Publisher({**kafka, "message.timeout.ms": 300_000, "linger.ms": 5}, self.topics)
        self.plans: dict[str, SystemPlan] = {}
        for name in ("fair", "prio"):
            definition = compile_manifest(MANIFEST.format(name=name, window=WINDOW))
            self.publisher.define_system(definition)
            self.plans[name] = definition.plan
        self.publisher.flush()
        bootstrap = kafka["bootstrap.servers"]
        self.env = {**worker_env(bootstrap, "", self.topics.prefix), "TASKPLANE_METRICS_PORT": "0",
                    "TASKPLANE_RUNTIME_TICK_INTERVAL_MS": "100", "TASKPLANE_RUNTIME_MAX_BATCH_MS": "50"}
        instances = [*(("orchestrator", i) for i in range(orchestrators)), ("dispatcher", 0)]
        self.components = [Component(name, [sys.executable, "-m", "taskplane.cli", "processor", "run", name,
                                            "--instance", f"{name}-{i}"], self.env, workdir, f"{name}-{i}")
                           for name, i in instances]
        self.workers = [WorkerProcess(f"w{i}", {"fair": TOOLS, "prio": TOOLS}, self.env, workdir, CONCURRENCY)
                        for i in range(WORKERS)]
        self.log: EventLog | None = None
        self.offers: EventLog | None = None  # dispatch-events: what the dispatcher has queued

    def __enter__(self) -> Bench:
        for component in self.components:
            component.start()
        for worker in self.workers:
            worker.start()
        self.log = EventLog(self.kafka, self.topics.events)
        self.offers = EventLog(self.kafka, self.topics.dispatch_events)
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.stop(5)
        for component in self.components:
            component.stop()
        for log in (self.log, self.offers):
            if log is not None:
                log.close()

    def submit(self, system: str, tenant: str, priority: int = 0) -> str:
        run_id = uuid.uuid4().hex
        self.publisher.publish(SubmitRun(run_id, self.plans[system], json.dumps({"seconds": TASK_S}), None,
                                         tenant, priority))
        return run_id

    def trickle(self, system: str, tenant: str, per_second: float, seconds: float, priority: int = 0) -> list[str]:
        ids, start = [], time.monotonic()
        for index in range(int(per_second * seconds)):
            time.sleep(max(0.0, start + index / per_second - time.monotonic()))
            ids.append(self.submit(system, tenant, priority))
            self.publisher.flush()
        return ids

    def finished(self, ids: list[str], timeout_s: float) -> dict[str, int]:
        """Latency (ms, log time) of each run of ``ids``, once all have succeeded."""
        assert self.log is not None
        wanted, deadline = set(ids), time.monotonic() + timeout_s
        while True:
            done = {e.run_id: e.finished_ms for e in self.log.events(RunSucceeded) if e.run_id in wanted}
            if len(done) == len(wanted) or time.monotonic() > deadline:
                break
            for component in self.components:
                if not component.alive():
                    raise RuntimeError(f"{component.name} died: {component.log.read_text()[-1500:]}")
            time.sleep(0.25)
        submitted = {e.run_id: e.submitted_ms for e in self.log.events(RunSubmitted) if e.run_id in wanted}
        if len(done) < len(wanted):
            print(f"  {len(wanted) - len(done)} of {len(wanted)} runs unfinished after {timeout_s:.0f} s",
                  file=sys.stderr)
        return {run: done[run] - submitted[run] for run in done if run in submitted}

    def accepted(self, ids: list[str], timeout_s: float) -> None:
        """Until the orchestrator has taken the submits of ``ids``."""
        assert self.log is not None
        self._until(self.log, RunSubmitted, ids, timeout_s)

    def queued(self, ids: list[str], timeout_s: float) -> None:
        """Until the dispatcher has queued (or released) the offers of ``ids``."""
        assert self.offers is not None
        self._until(self.offers, OfferQueued, ids, timeout_s)

    @staticmethod
    def _until(log: EventLog, kind: type[Any], ids: list[str], timeout_s: float) -> None:
        wanted, deadline = set(ids), time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len({e.run_id for e in log.events(kind) if e.run_id in wanted}) >= len(wanted):
                return
            time.sleep(0.1)


def measure(kafka: dict[str, Any], quick: bool, seconds: float | None = None, orchestrators: int = 1,
            dump: Path | None = None) -> dict[str, Any]:
    seconds = seconds or (6.0 if quick else 20.0)
    flood = 5_000
    backlog = 150 if quick else 600
    out: dict[str, Any] = {"quick": quick, "flood_runs": flood, "task_ms": int(TASK_S * 1000),
                           "worker_slots": WORKERS * CONCURRENCY, "window": WINDOW,
                           "phase_s": seconds, "orchestrators": orchestrators}
    with tempfile.TemporaryDirectory(prefix="taskplane-fair-") as tmp, Bench(kafka, Path(tmp), orchestrators) as bench:
        bench.finished(bench.trickle("fair", "b", 5, 2), 60)  # warm-up: every process serving
        # priority: a backlog of priority-1 runs, then priority-5 runs arrive
        low = [bench.submit("prio", "p", 1) for _ in range(backlog)]
        bench.publisher.flush()
        high = bench.trickle("prio", "p", 5, min(seconds, 4.0), priority=5)
        high_ms = list(bench.finished(high, 120).values())
        low_ms = list(bench.finished(low, 300).values())
        out.update(priority_backlog_runs=backlog, priority_p50_ms_high=percentile(high_ms, 0.5),
                   priority_p50_ms_low=percentile(low_ms, 0.5))
        print(f"priority: high p50 {out['priority_p50_ms_high']} ms, low p50 {out['priority_p50_ms_low']} ms",
              file=sys.stderr)
        solo = bench.finished(bench.trickle("fair", "b", 5, seconds), 120)
        out["small_tenant_p99_ms_solo"] = percentile(list(solo.values()), 0.99)
        out["small_tenant_p50_ms_solo"] = percentile(list(solo.values()), 0.5)
        print(f"solo: p99 {out['small_tenant_p99_ms_solo']} ms", file=sys.stderr)
        started = time.monotonic()
        flood_ids = [bench.submit("fair", "a") for _ in range(flood)]
        during = bench.trickle("fair", "b", 5, 1.0)  # B keeps submitting while A's flood is taken in
        bench.accepted(flood_ids, 300)
        out["flood_accepted_ms"] = int((time.monotonic() - started) * 1000)
        bench.queued(flood_ids, 300)
        out["flood_ingest_ms"] = int((time.monotonic() - started) * 1000)
        flooded = bench.finished(bench.trickle("fair", "b", 5, seconds), 180)
        early = bench.finished(during, 180)
        out["small_tenant_p99_ms_flooded"] = percentile(list(flooded.values()), 0.99)
        out["small_tenant_p50_ms_flooded"] = percentile(list(flooded.values()), 0.5)
        out["small_tenant_p99_ms_flooded_with_ingest"] = percentile([*flooded.values(), *early.values()], 0.99)
        a_done = sum(1 for e in bench.log.events(RunSucceeded) if e.run_id in set(flood_ids)) if bench.log else 0
        out["flood_runs_done_meanwhile"] = a_done
        out["flood_outlasted_phase"] = a_done < flood
        if not out["flood_outlasted_phase"]:  # B's last runs met no flood: a shorter phase measures one
            print(f"WARNING: A's flood ended before B's flooded phase did ({seconds:.0f} s): its p99 is not "
                  "all flooded", file=sys.stderr)
        if dump is not None:  # B's latencies in completion order, for a look at the tail
            dump.write_text(json.dumps({"solo": [solo[r] for r in solo], "flooded": [flooded[r] for r in flooded]}))
        print(f"flooded: p99 {out['small_tenant_p99_ms_flooded']} ms ({a_done} of A's runs done meanwhile)",
              file=sys.stderr)
    solo_p99, flooded_p99 = out["small_tenant_p99_ms_solo"], out["small_tenant_p99_ms_flooded"]
    out["flooded_over_solo"] = round(flooded_p99 / solo_p99, 2) if solo_p99 and flooded_p99 else None
    high_p50, low_p50 = out["priority_p50_ms_high"], out["priority_p50_ms_low"]
    out["high_over_low"] = round(high_p50 / low_p50, 3) if high_p50 and low_p50 else None
    return out


def limits(kafka: dict[str, Any], quick: bool) -> dict[str, Any]:
    """The rate-limit part's figures (``bench/_fairness_limits.py``), when it exists, on
    the same broker (under its own topic prefix)."""
    if importlib.util.find_spec("bench._fairness_limits") is None:
        return {}
    from bench import _fairness_limits

    accepted = inspect.signature(_fairness_limits.measure).parameters
    options: dict[str, Any] = {"quick": quick} if "quick" in accepted else {}
    if "kafka" in accepted:
        options["kafka"] = kafka
    found: dict[str, Any] = _fairness_limits.measure(**options)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases (under a minute)")
    parser.add_argument("--seconds", type=float, help="tenant B's phases (default 20, quick 6)")
    parser.add_argument("--orchestrators", type=int, default=1, help="orchestrator instances (default 1)")
    parser.add_argument("--dump", type=Path, help="write B's run latencies (ms) to this JSON file")
    args = parser.parse_args()
    with bench_stack() as kafka:
        kafka = {**kafka, "log_level": 3}
        result = measure(kafka, args.quick, args.seconds, args.orchestrators, args.dump)
        result.update(limits(kafka, args.quick))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
