"""A chaos run: payment runs (fakepay charge + ledger record behind a flaky fraud
check) through a deployment of separate processes, while the orchestrator, the
breaker, the dispatcher (every other run has a tenant and a priority, docs/scheduling.md),
the projector, workers and the Kafka broker are SIGKILLed at seeded random moments and
come back like pods (the broker on its data dir and port).

    python -m bench.chaos [--runs 2000] [--seed 7] [--quick]
    python -m bench.chaos --brokers 3 [--orchestrators 2] [--rate 5] [--only rolling]

With ``--brokers 3`` the broker is a 3-node KRaft cluster (replication 3, min ISR 2) and
the broker kill becomes four (bench/_chaos_cluster.py): ``leader`` (twice at least),
``controller``, ``rolling`` and ``isr``; two orchestrator instances share the partitions
and one of them is killed; the load runs until the last kill recovered.

Checked at the end from sources independent of taskplane's bookkeeping: every run
succeeded or is dead-lettered with a real cause; fakepay holds exactly one charge per
succeeded run and the ledger matches; the read model equals a fresh fold of
``events``; nothing landed on ``poison``; each killed component moved again within its
bound (a worker: every lease it held taken from it, within leaseTimeout + 1 s); no
lease of a live worker expired; fraud.score (concurrency 4, 1200/min fleet-wide) never
ran more than 4 calls at once (its own timestamps) nor got more permits in a minute
than the governor's bound. Last line JSON: brokers, orchestrators, rate, runs,
succeeded, dead_lettered, lost,
duplicated, stuck (never moved again), kills, recover_s (worst per kind), permits (the
limited fraud.score: granted, the most held and the most running at once, the busiest
minute, each against its limit), cron (bench/_chaos_cron.py), governance (a second
system's budget and approval runs, a person granting each refund throughout:
bench/_chaos_governance.py), fan (a diamond whose follow-ons workers start ahead of
their grants, each task one side effect: bench/_chaos_fan.py), verify (each processor's
log re-decided by ``taskplane verify`` after the kills, and its changelog against the fold
of its events: bench/_chaos_verify.py), plus slow
(moved again past its bound), failures (the checks that failed) and
worker_regranted_s (worst kill → the dead worker's tasks held by a worker again or
finished: the takeover plus the wait for a free slot, unbounded under a backlog).
Exit code 1 on any loss, duplicate, stuck or slow component or failed check.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._chaos_checks import Verdict, check_all
from bench._chaos_cluster import BOUND_S as CLUSTER_BOUND_S
from bench._chaos_cluster import CLUSTER_KINDS, Served, kill_node_kind
from bench._chaos_cron import check_schedule, start_schedule, stop_schedule
from bench._chaos_fan import DEFINITION as FAN
from bench._chaos_fan import TOOLS as FAN_TOOLS
from bench._chaos_fan import Fan, started_ahead
from bench._chaos_governance import APPROVAL_KEY, Governed
from bench._chaos_governance import DEFINITION as GOVERNED
from bench._chaos_governance import TOOLS as GOVERNED_TOOLS
from bench._chaos_stack import ChaosStack, past_the_killed
from bench._chaos_verify import verify_all
from taskplane.contract.messages import (
    AttemptFailed,
    LeaseExpired,
    LeaseGranted,
    LeaseReleased,
    RunCancelled,
    RunFailed,
    RunSucceeded,
    SubmitRun,
    TaskDeadLettered,
    TaskSucceeded,
)
from taskplane.streams.publisher import run_id_for
from taskplane.testing import compile_manifest
from taskplane.testing.progress import first_progress

TOOLS = str(Path(__file__).resolve().parent / "_chaos_tools.py")
MANIFEST = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: chaos-payments}
spec:
  agents:
    - name: payment-processor
      tools:
        - fraud.score: {timeout: 5s, retries: 2, concurrency: 4, rateLimit: 1200/min}
        - stripe.charge: {timeout: 10s}
        - ledger.record: {timeout: 10s}
  execution: {leaseTimeout: 10s, maxRetries: 5, initialBackoff: 200ms, backoffMultiplier: 2.0,
              maxBackoffCap: 2s, jitterFraction: 0.1, idempotencyTracking: true}
  breakers: {failureThreshold: 8, cooldown: 2s}
"""
KINDS = ("orchestrator", "breaker", "dispatcher", "cron", "projector", "worker", "broker")
BOUND_S = {"orchestrator": 5.0, "breaker": 5.0, "dispatcher": 5.0, "cron": 5.0, "projector": 5.0, "worker": 11.0, "broker": 5.0}
GIVE_UP_S = 120.0  # a component not moving by then is stuck


class Submitter:
    """Submits ``runs`` payment runs at ``per_second``; run i charges customer c<i>."""

    def __init__(self, stack: ChaosStack, plan: Any, runs: int | None, per_second: float) -> None:
        """``runs`` None: until ``stop()`` (a cluster's kills take as long as they take)."""
        self._stack, self._plan, self._runs, self._pause = stack, plan, runs, 1 / per_second
        self.run_ids: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Submitter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        for index in itertools.count():
            if (self._runs is not None and index >= self._runs) or self._stopped.is_set():
                break
            self._submit(f"c{index}", 100 + index, f"chaos-{index}")
            # Paced by the clock: a submit stalled by an outage is followed by a catch-up.
            time.sleep(max(0.0, started + (index + 1) * self._pause - time.monotonic()))
        self._stack.publisher.flush(300)

    def nudge(self) -> None:
        """One more run, so a component restarted after the load ended still has work
        to show progress on (it is checked like the others)."""
        probe = len(self.run_ids)
        self._submit(f"probe{probe}", 1, f"chaos-probe-{probe}")

    def _submit(self, customer: str, amount: int, key: str) -> None:
        with self._lock:
            index = len(self.run_ids)
            run_input = json.dumps({"customer": customer, "amount": amount}, sort_keys=True)
            run_id = run_id_for(self._plan.name, key)
            # Every other run has a tenant and a priority: it goes through the dispatcher
            # (docs/scheduling.md), the others keep the direct path; both are checked.
            tenant, priority = (f"t{index % 3}", 1 + index % 5) if index % 2 else ("", 0)
            self._stack.publisher.publish(SubmitRun(run_id, self._plan, run_input, key, tenant, priority))
            self.run_ids[run_id] = index


def schedule(rng: random.Random, kills_per_kind: int, duration_s: float) -> list[tuple[float, str]]:
    """Seeded kill moments over the load's middle 80 %, one kind at a time."""
    moments = [(rng.uniform(0.1, 0.9) * duration_s, kind) for kind in KINDS for _ in range(kills_per_kind)]
    return sorted(moments)


def cluster_kills(rng: random.Random, kills_per_kind: int) -> list[str]:
    """A cluster's kills in a seeded order: at least two leader kills, a controller kill,
    a rolling restart and an isr outage, with the processes' kills between them."""
    kinds = [*KINDS[:-1], "controller"] * kills_per_kind + ["leader"] * max(2, kills_per_kind) + ["rolling", "isr"]
    rng.shuffle(kinds)
    return kinds


def kill_and_recover(stack: ChaosStack, kind: str, rng: random.Random, killed: list[tuple[str, float]],
                     outages: list[tuple[float, float]], regranted: list[float], nudge: Any) -> float | None:
    """One kill of ``kind``, restarted like a pod; seconds until it made progress again."""
    if kind == "worker":
        # Recovered when every lease the dead worker held was taken from it (expired, so
        # its task is queued again, or re-granted, or finished): the failover the lease
        # bounds. Its tasks then wait for a free slot like any other (after a broker
        # outage, behind the backlog the outage left): reported apart, in regranted.
        worker = rng.choice(stack.workers)
        ids = {worker.worker_id(system) for system in stack.systems}
        held = held_leases(stack, ids)
        worker.kill()
        started = time.monotonic()
        killed.extend((worker_id, time.time()) for worker_id in ids)
        stack.restart_worker(worker)
        try:
            stack.log.wait_for(lambda log: all(handed_back(log, lease) for lease in held), GIVE_UP_S)
        except TimeoutError:
            return None
        took = time.monotonic() - started
        with contextlib.suppress(TimeoutError):  # behind a backlog the wait for a slot is unbounded
            stack.log.wait_for(lambda log: all(moved_on(log, lease) for lease in held), GIVE_UP_S)
        regranted.append(time.monotonic() - started)
        return took
    if kind in CLUSTER_KINDS:
        return kill_node_kind(stack, kind, rng, outages)
    if kind == "orchestrator" and stack.orchestrators > 1:
        # Served again: the killed instance's partitions, taken over by another
        # instance or by its own restart, each committed past where it was.
        served = Served(stack.kafka, f"{stack.topics.prefix}.orchestrator", stack.topics.commands)
        try:
            before_offsets = served.baseline()
            started = time.monotonic()
            victim = rng.choice(stack.instances("orchestrator"))
            stack.kill(victim)
            stack.start(victim)
            nudge()
            served_after = served.wait_moved(before_offsets, GIVE_UP_S)
            return None if served_after is None else time.monotonic() - started
        finally:
            served.close()
    before = stack.progress.baseline()
    if kind == "broker":
        down = time.time()
        stack.kill_broker()
        time.sleep(rng.uniform(3, 8))  # the outage
        stack.restart_broker()
        started = time.monotonic()
        nudge()
        moved = first_progress(stack.progress, before, ["orchestrator", "projector"], GIVE_UP_S)
        # From the workers' side the outage lasts until the orchestrator commits again.
        outages.append((down, time.time()))
        return None if None in moved.values() else max(t for t in moved.values() if t is not None)
    started = time.monotonic()
    stack.kill(kind)
    stack.start(kind)
    nudge()
    moved_after = first_progress(stack.progress, past_the_killed(stack, before), [kind], GIVE_UP_S)[kind]
    return None if moved_after is None else time.monotonic() - started


def drain(stack: ChaosStack, wanted: set[str], quiet_s: float = 120.0) -> float:
    """Wait until every run finished, as long as runs keep finishing (a backlog left by
    outages drains at the host's pace); what did not finish is counted as lost."""
    started = time.monotonic()

    def finished(log: Any) -> set[str]:
        return wanted & ({e.run_id for e in log.events(RunSucceeded)} | {e.run_id for e in log.events(TaskDeadLettered)})

    done, last = 0, started
    while len(now := finished(stack.log)) < len(wanted):
        if len(now) == done and time.monotonic() - last > quiet_s:
            break
        if len(now) > done:
            done, last = len(now), time.monotonic()
        time.sleep(1.0)
    return time.monotonic() - started


def held_leases(stack: ChaosStack, worker_ids: set[str]) -> list[tuple[str, str, int]]:
    """(run, task, epoch) of the leases ``worker_ids`` hold now, as far as the log says."""
    held: dict[tuple[str, str], int] = {}
    for _meta, event in stack.log.records():
        if isinstance(event, LeaseGranted):
            if event.worker_id in worker_ids:
                held[(event.run_id, event.task)] = event.epoch
            else:
                held.pop((event.run_id, event.task), None)
        elif isinstance(event, TaskSucceeded | LeaseReleased | LeaseExpired | AttemptFailed | TaskDeadLettered):
            held.pop((event.run_id, event.task), None)
    return [(run, task, epoch) for (run, task), epoch in held.items()]


def handed_back(log: Any, lease: tuple[str, str, int]) -> bool:
    run, task, epoch = lease
    return moved_on(log, lease) or any(e.task == task and e.epoch == epoch
                                       for e in (*log.events(LeaseExpired, run), *log.events(LeaseReleased, run)))


def moved_on(log: Any, lease: tuple[str, str, int]) -> bool:
    """The task went on past that lease, or its run ended (a budget stops a run with its
    leases held: nothing is handed back, nothing waits)."""
    run, task, epoch = lease
    return (any(e.task == task and e.epoch > epoch for e in log.events(LeaseGranted, run))
            or any(e.task == task for e in log.events(TaskSucceeded, run))
            or bool(log.events(RunFailed, run)) or bool(log.events(RunCancelled, run)))



def run(runs: int, seed: int, kills_per_kind: int, per_second: float, brokers: int = 1,
        orchestrators: int = 1, only: tuple[str, ...] = ()) -> tuple[dict[str, Any], Verdict]:
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="taskplane-bench-chaos-"))
    definition = compile_manifest(MANIFEST)
    with ChaosStack(workdir, {definition.name: TOOLS, GOVERNED.name: GOVERNED_TOOLS, FAN.name: FAN_TOOLS},
                    workers=3, concurrency=4,
                    brokers=brokers, orchestrators=orchestrators,
                    extra_env={"TASKPLANE_APPROVAL_KEY": APPROVAL_KEY}) as stack:
        from taskplane._examples.fakepay import serve

        fakepay = serve(0, stack.database_url)
        threading.Thread(target=fakepay.serve_forever, daemon=True).start()
        stack.env["TASKPLANE_FAKEPAY_URL"] = f"http://127.0.0.1:{fakepay.server_address[1]}"
        _create_ledger(stack.database_url)
        stack.publisher.define_system(definition)
        stack.publisher.flush()
        start_schedule(stack)  # a cron schedule fires through every kill (bench/_chaos_cron.py)
        governed = Governed(stack, per_second / 5)  # budgets and approvals (bench/_chaos_governance.py)
        governed.define()
        fan = Fan(stack, per_second / 5)  # a diamond: follow-ons started ahead (bench/_chaos_fan.py)
        fan.define()
        stack.start_workers()
        governed.start()
        fan.start()
        clustered = brokers > 1
        submitter = Submitter(stack, definition.plan, None if clustered else runs, per_second).start()
        started = time.monotonic()
        if clustered:  # one after another, a few seconds apart, under load all along
            plan = [(0.0, kind) for kind in cluster_kills(rng, kills_per_kind)]
        else:
            plan = schedule(rng, kills_per_kind, runs / per_second)
        if only:
            plan = [(at_s, kind) for at_s, kind in plan if kind in only]
        kinds = sorted({kind for _at, kind in plan}, key=[*KINDS, *CLUSTER_KINDS].index)
        kills: dict[str, int] = dict.fromkeys(kinds, 0)
        recover: dict[str, float] = dict.fromkeys(kinds, 0.0)
        stuck: list[str] = []  # never moved again within GIVE_UP_S
        slow: list[str] = []  # moved again, later than its bound
        killed_workers: list[tuple[str, float]] = []
        outages: list[tuple[float, float]] = []  # broker down → back, wall clock
        regranted: list[float] = []  # per worker kill: until its tasks held a lease again (or finished)
        for at_s, kind in plan:
            time.sleep(rng.uniform(2, 5) if clustered else max(0.0, at_s - (time.monotonic() - started)))
            took = kill_and_recover(stack, kind, rng, killed_workers, outages, regranted, submitter.nudge)
            kills[kind] += 1
            print(f"{time.monotonic() - started:6.1f}s kill {kind}: moved again after "
                  f"{'never' if took is None else f'{took:.1f}s'}"
                  + (f" (its tasks running again after {regranted[-1]:.1f}s)" if kind == "worker" and took is not None else ""),
                  flush=True)
            if took is None:
                stuck.append(kind)
            elif took > {**BOUND_S, **CLUSTER_BOUND_S}[kind]:
                slow.append(f"{kind} ({took:.1f}s > {({**BOUND_S, **CLUSTER_BOUND_S})[kind]:.0f}s)")
            recover[kind] = max(recover[kind], float("inf") if took is None else took)
        submitter.stop()
        governed.stop_submitting()
        fan.stop_submitting()
        submitter.join()
        wanted = set(submitter.run_ids)
        drained = drain(stack, wanted)
        print(f"{time.monotonic() - started:6.1f}s load over; {len(wanted)} runs submitted, drained for "
              f"{drained:.0f}s more (unfinished ones count as lost)", flush=True)
        stop_schedule(stack)
        verdict = check_all(stack, wanted, killed_workers, outages, definition.plan.execution.lease_timeout_ms,
                            definition.plan)
        cron = check_schedule(stack, verdict.failures)
        governance = governed.finish(verdict.failures)
        fanned = fan.finish(verdict.failures)
        verified = verify_all(stack, verdict.failures)  # every processor's decisions re-decided (bench/_chaos_verify.py)
        fakepay.shutdown()
    fanned["fan_started_ahead_at_least"] = started_ahead(workdir)  # logged as the workers stopped
    result = {
        "brokers": brokers, "orchestrators": orchestrators, "rate": per_second,
        "runs": len(wanted), "succeeded": verdict.succeeded, "dead_lettered": verdict.dead_lettered,
        "lost": verdict.lost, "duplicated": verdict.duplicated, "stuck": len(stuck),
        "kills": kills, "recover_s": {k: round(v, 2) for k, v in recover.items()},
        "worker_regranted_s": round(max(regranted, default=0.0), 2),
        "failures": verdict.failures + [f"stuck: {s}" for s in stuck], "slow": slow,
        "expired_in_outage": verdict.expired_in_outage, "permits": verdict.permits, "cron": cron,
        "governance": governance, "fan": fanned, "verify": verified, "seed": seed,
    }
    return result, verdict


def _create_ledger(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ledger (charge_id text PRIMARY KEY, run_id text NOT NULL, "
                     "amount bigint NOT NULL, currency text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kills-per-kind", type=int, default=2)
    parser.add_argument("--rate", type=float, default=10.0, help="runs submitted per second")
    parser.add_argument("--brokers", type=int, default=1, choices=(1, 3),
                        help="3: a KRaft cluster, with the leader, controller, rolling and isr kills")
    parser.add_argument("--orchestrators", type=int, default=None,
                        help="orchestrator instances (default 1; 2 with --brokers 3)")
    parser.add_argument("--only", default="", help="comma-separated kill kinds to keep (e.g. rolling)")
    parser.add_argument("--quick", action="store_true", help="200 runs, one kill of each kind")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.kills_per_kind, args.rate = 200, 1, 2.5
    orchestrators = args.orchestrators or (2 if args.brokers > 1 else 1)
    only = tuple(kind for kind in args.only.split(",") if kind)
    result, _verdict = run(args.runs, args.seed, args.kills_per_kind, args.rate, args.brokers, orchestrators, only)
    print(json.dumps(result))
    failed = result["failures"] or result["slow"] or result["lost"] or result["duplicated"] or result["stuck"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
