"""Failover times on a deployment of separate processes (bench/_chaos_stack.py), each
component SIGKILLed and restarted like a pod, the broker restarted on its data dir:

- worker: SIGKILL the worker holding a lease while more work is queued behind it;
  kill → another worker holds the lease, kill → every queued task started;
- orchestrator / projector: kill → its partitions are served again (committed
  offsets, or the projector's offsets in Postgres, move);
- broker: back → the first run completes;
- renewal lateness: how late each RenewLease was sent against its schedule.

    python -m bench.failover [--trials N] [--quick]

Last line JSON: lease_timeout_ms, worker_takeover_p99_ms, queued_start_p99_ms,
renewal_lateness_p99_ms, orchestrator_serving_p99_ms, projector_moving_p99_ms,
broker_resume_ms (plus p50s and trial counts, broker_wedged: restarts after which no run
completed within 2 minutes; exit code 1 when there was one).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._chaos_stack import ChaosStack, past_the_killed
from taskplane.contract.messages import LeaseGranted, LeaseRenewed, RunSucceeded
from taskplane.testing import compile_manifest
from taskplane.testing.progress import first_progress

TOOLS = str(Path(__file__).resolve().parent / "_failover_tools.py")
MANIFEST = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: failover}}
spec:
  agents:
    - name: sleeper
      tools: [{{bench.sleep: {{timeout: 120s}}}}]
  execution: {{leaseTimeout: {lease_ms}ms, maxRetries: 5, initialBackoff: 100ms, maxBackoffCap: 1s}}
"""
GIVE_UP_S = 120.0  # a broker trial with no completed run by then is a wedge
QUEUED = 6  # short runs submitted behind the long one in each worker trial


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    """A steady trickle of short runs, so the processors always have input."""

    def __init__(self, stack: ChaosStack, plan: Any, per_second: float) -> None:
        self._stack, self._plan, self._pause = stack, plan, 1 / per_second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._pause):
            self._stack.publisher.submit_run(self._plan, {"seconds": 0.01})


def first_grant_ms(stack: ChaosStack, run_id: str, after_epoch: int = 0) -> int | None:
    stamps = [meta.timestamp_ms for meta, event in stack.log.records()
              if isinstance(event, LeaseGranted) and event.run_id == run_id and event.epoch > after_epoch]
    return min(stamps) if stamps else None


def worker_trial(stack: ChaosStack, plan: Any) -> tuple[float, list[float]]:
    """(kill → takeover ms, [kill → start ms of each task queued behind the holder])."""
    long_run = stack.publisher.submit_run(plan, {"seconds": 100})
    stack.publisher.flush()
    stack.log.wait_for(lambda log: log.events(LeaseRenewed, long_run), 60)
    grant = stack.log.events(LeaseGranted, long_run)[-1]
    holder = stack.worker_of(grant.worker_id)
    assert holder is not None, grant.worker_id
    queued = [stack.publisher.submit_run(plan, {"seconds": 0.05}) for _ in range(QUEUED)]
    stack.publisher.flush()
    time.sleep(1.0)  # the free workers take what is theirs; the rest queues behind the holder
    holder.kill()
    killed_ms = time.time() * 1000
    behind = [r for r in queued if first_grant_ms(stack, r) is None]
    everything = [long_run, *queued]
    stack.log.wait_for(lambda log: set(everything) <= {e.run_id for e in log.events(RunSucceeded)}, 120)
    takeover = first_grant_ms(stack, long_run, grant.epoch)
    assert takeover is not None
    starts = [float(first_grant_ms(stack, r) or 0) - killed_ms for r in behind]
    stack.restart_worker(holder)
    return takeover - killed_ms, starts


def serving_trial(stack: ChaosStack, name: str) -> float | None:
    """SIGKILL ``name``, start it again at once (a pod restart); seconds until it moves
    (its successor's own commits: past_the_killed)."""
    before = stack.progress.baseline()
    killed = time.monotonic()
    stack.kill(name)
    stack.start(name)
    took = first_progress(stack.progress, past_the_killed(stack, before), [name], timeout_s=60)[name]
    return None if took is None else time.monotonic() - killed


def broker_trial(stack: ChaosStack) -> tuple[float | None, list[str]]:
    """SIGKILL the broker, restart it on its data dir after 5 s; ms from its return until
    the next run completes, or None when none did within GIVE_UP_S (a wedge), with the
    processors whose position did not move meanwhile."""
    stack.kill_broker()
    time.sleep(5)  # the outage
    stack.restart_broker()
    back = time.monotonic()
    done = len(stack.log.events(RunSucceeded))
    try:
        stack.log.wait_for(lambda log: len(log.events(RunSucceeded)) > done, GIVE_UP_S)
    except TimeoutError:
        before = stack.progress.baseline()
        time.sleep(5)
        return None, sorted(set(stack.components) - stack.progress.moved_since(before))
    return (time.monotonic() - back) * 1000, []


def renewal_lateness_ms(stack: ChaosStack, lease_ms: int) -> list[float]:
    """Per renewal: (expiry it set − previous expiry) − the renewal interval. Expiries are
    the renewal's send time + lease, so this is how late it was sent."""
    interval = lease_ms / 3
    last: dict[tuple[str, str, int], int] = {}
    late: list[float] = []
    for _meta, event in stack.log.records():
        if isinstance(event, LeaseGranted | LeaseRenewed):
            key = (event.run_id, event.task, event.epoch)
            if key in last and isinstance(event, LeaseRenewed):
                late.append(max(0.0, event.expires_ms - last[key] - interval))
            last[key] = event.expires_ms
    return late


def measure(trials: int, lease_ms: int, broker_trials: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="taskplane-bench-failover-"))
    definition = compile_manifest(MANIFEST.format(lease_ms=lease_ms))
    with ChaosStack(workdir, {definition.name: TOOLS}, workers=3, concurrency=1) as stack:
        stack.publisher.define_system(definition)
        stack.publisher.flush()
        stack.start_workers()
        plan = definition.plan
        takeovers: list[float] = []
        queued: list[float] = []
        for trial in range(trials):
            takeover, starts = worker_trial(stack, plan)
            takeovers.append(takeover)
            queued.extend(starts)
            print(f"worker trial {trial}: takeover {takeover:.0f} ms, queued starts {[round(s) for s in starts]}",
                  flush=True)
        serving: dict[str, list[float]] = {"orchestrator": [], "projector": []}
        broker: list[float] = []
        wedged: list[int] = []
        with Load(stack, plan, per_second=5):
            for name in serving:
                for trial in range(trials):
                    took = serving_trial(stack, name)
                    serving[name].append(float("inf") if took is None else took * 1000)
                    print(f"{name} trial {trial}: serving again after {serving[name][-1]:.0f} ms", flush=True)
                    stack.check()
            for trial in range(broker_trials):
                took_ms, still = broker_trial(stack)
                broker.append(float("inf") if took_ms is None else took_ms)
                if took_ms is None:  # reported; restarted like a liveness probe would, so later trials measure
                    wedged.append(trial)
                    print(f"broker trial {trial}: WEDGED, no run completed {GIVE_UP_S:.0f} s after its return; "
                          f"not moving: {still}", flush=True)
                    for name in still or list(stack.components):
                        stack.kill(name)
                        stack.start(name)
                else:
                    print(f"broker trial {trial}: first run completed {took_ms:.0f} ms after its return", flush=True)
                stack.check()
        lateness = renewal_lateness_ms(stack, lease_ms)

    def p(values: list[float], q: float) -> float | None:
        found = percentile(values, q)  # None when nothing was measured or the quantile is a wedge
        return None if found is None or found == float("inf") else round(found, 1)

    return {
        "lease_timeout_ms": lease_ms,
        "worker_takeover_p50_ms": p(takeovers, 0.5), "worker_takeover_p99_ms": p(takeovers, 0.99),
        "queued_start_p50_ms": p(queued, 0.5), "queued_start_p99_ms": p(queued, 0.99),
        "queued_tasks": len(queued),
        "renewal_lateness_p99_ms": p(lateness, 0.99), "renewals": len(lateness),
        "orchestrator_serving_p50_ms": p(serving["orchestrator"], 0.5),
        "orchestrator_serving_p99_ms": p(serving["orchestrator"], 0.99),
        "projector_moving_p50_ms": p(serving["projector"], 0.5),
        "projector_moving_p99_ms": p(serving["projector"], 0.99),
        "broker_resume_ms": p(broker, 0.99), "broker_resume_p50_ms": p(broker, 0.5),
        "broker_trials": len(broker), "broker_wedged": len(wedged),
        "trials": trials,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--lease-ms", type=int, default=10_000, help="the system's leaseTimeout")
    parser.add_argument("--quick", action="store_true", help="2 trials each, one broker restart")
    args = parser.parse_args()
    trials = 2 if args.quick else args.trials
    result = measure(trials, args.lease_ms, 1 if args.quick else args.trials)
    print(json.dumps(result))
    sys.exit(1 if result["broker_wedged"] else 0)


if __name__ == "__main__":
    main()
