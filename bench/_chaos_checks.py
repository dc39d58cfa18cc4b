"""The end-of-run checks of bench.chaos, each from a source taskplane does not keep
for itself: fakepay's charges table, the ledger table, a fresh fold of ``events``
into a new schema, the ``poison`` topic, and the kill times the bench recorded."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from taskplane.contract.messages import (
    LeaseExpired,
    RunFailed,
    RunSucceeded,
    TaskDeadLettered,
    ToolCallSucceeded,
)
from taskplane.contract.permits import PermitGranted, PermitReleased
from taskplane.devstack.kafka import dropped_markers
from taskplane.processors.breaker.permits import window_bound
from taskplane.processors.orchestrator.decider import LEASE_EXPIRED
from taskplane.processors.projector.rebuild import rebuild_projections
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.serde import Serde

READ_MODEL_TABLES = ("runs", "tasks", "attempts", "tool_calls", "dead_letters", "breakers")
EXPIRY_SLACK_MS = 5_000  # a dead holder's lease expires within leaseTimeout (+ tick, + this) of the kill
SEND_DEADLINE_MS = 30_000  # a worker gives an attempt up when its records stay undelivered this long


@dataclass
class Verdict:
    succeeded: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    expired_in_outage: int = 0  # leases that expired while (or just after) the broker was away
    permits: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def ended(log: Any, runs: Iterable[str]) -> bool:
    """Every one of ``runs`` succeeded or failed on the log."""
    done = {e.run_id for e in log.events(RunSucceeded)} | {e.run_id for e in log.events(RunFailed)}
    return set(runs) <= done


def wait_ended(log: Any, runs: Iterable[str], wait_s: float) -> None:
    """Until every one of ``runs`` ended, or ``wait_s`` passed (the checks then say what not)."""
    with contextlib.suppress(TimeoutError):
        log.wait_for(lambda follower: ended(follower, runs), wait_s)


def check_all(stack: Any, run_ids: set[str], killed_workers: list[tuple[str, float]],
              outages: list[tuple[float, float]], lease_ms: int, plan: Any = None) -> Verdict:
    verdict = Verdict()
    succeeded = {e.run_id for e in stack.log.events(RunSucceeded)} & run_ids
    letters = [e for e in stack.log.events(TaskDeadLettered) if e.run_id in run_ids]
    lettered = {e.run_id for e in letters} - succeeded
    verdict.succeeded, verdict.dead_lettered = len(succeeded), len(lettered)
    verdict.lost = len(run_ids - succeeded - lettered)
    for run_id in sorted(run_ids - succeeded - lettered)[:3]:  # what the log holds of each: where it stopped
        seen = [type(e).__name__ for e in stack.log.all_events() if getattr(e, "run_id", None) == run_id]
        verdict.failures.append(f"lost run {run_id}: its events {seen[-12:] or 'none'}")
    live, in_outage = live_holder_expiries(stack, killed_workers, outages, lease_ms)
    verdict.expired_in_outage = in_outage
    if live:
        verdict.failures.append(f"{len(live)} lease(s) of live holders expired: {live[:5]}")
    for letter in letters:
        if "internal error" in letter.error or (LEASE_EXPIRED in letter.error and letter.run_id in
                                                 {run for run, _task, _worker in live}):
            verdict.failures.append(f"dead letter without a real cause: {letter.run_id} {letter.error[:120]}")
    check_payments(stack.database_url, succeeded, verdict)
    check_read_model(stack, verdict)
    if plan is not None:
        check_permits(stack, plan, verdict)
    poisoned = sum(1 for _ in read_to_end(stack.kafka, stack.topics.poison))
    if poisoned:
        verdict.failures.append(f"{poisoned} record(s) on poison")
    if dropped := dropped_markers(stack.workdir):  # the default broker keeps them (docs/failover.md)
        verdict.failures.append(f"the broker dropped commit markers {len(dropped)} time(s): {dropped[0][:300]}")
    return verdict


def live_holder_expiries(stack: Any, killed: list[tuple[str, float]], outages: list[tuple[float, float]],
                         lease_ms: int) -> tuple[list[tuple[str, str, str]], int]:
    """LeaseExpired events whose holder had not been killed shortly before (failures),
    and the count of those that fell in a broker outage: a worker whose sends to the log
    failed past their deadline gives its attempt up, so its lease expires by design."""
    found = []
    in_outage = 0
    for meta, event in stack.log.records():
        if not isinstance(event, LeaseExpired):
            continue
        at_ms = meta.timestamp_ms
        dead = any(worker == event.worker_id and kill_s * 1000 <= at_ms <= kill_s * 1000 + lease_ms + EXPIRY_SLACK_MS
                   for worker, kill_s in killed)
        if dead:
            continue
        if any(down * 1000 <= at_ms <= back * 1000 + SEND_DEADLINE_MS + lease_ms + EXPIRY_SLACK_MS
               for down, back in outages):
            in_outage += 1
        else:
            found.append((event.run_id, event.task, event.worker_id))
    return found, in_outage


def check_permits(stack: Any, plan_of_system: Any, verdict: Verdict, tool: str = "fraud.score") -> None:
    """The limited tool under the kills: the governor never had more holders than its
    concurrency nor granted more in a minute than its bucket allows (breaker-events, the
    breaker processor killed too), and the calls' own timestamps never overlapped more."""
    plan = next(t for a in plan_of_system.agents for t in a.tools if t.name == tool)
    serde = Serde()
    holders: set[tuple[str, int]] = set()
    most_held, granted = 0, []
    for _partition, _key, value in read_to_end(stack.kafka, stack.topics.breaker_events):
        event = serde.decode(value)[1] if value is not None else None
        if getattr(event, "tool", None) != tool:
            continue
        if isinstance(event, PermitGranted):
            holders.add((event.key, event.try_no))
            if event.token:
                granted.append(event.granted_ms)
        elif isinstance(event, PermitReleased):
            holders.discard((event.key, event.try_no))
        most_held = max(most_held, len(holders))
    granted.sort()
    busiest = max((sum(1 for t in granted[i:] if t < start + plan.rate_period_ms) for i, start in enumerate(granted)),
                  default=0)
    calls = [json.loads(e.result) for e in stack.log.events(ToolCallSucceeded) if e.tool == tool]
    edges = sorted([(c["started"], 1) for c in calls] + [(c["ended"], -1) for c in calls])
    running = most_running = 0
    for _at, step in edges:
        running += step
        most_running = max(most_running, running)
    verdict.permits = {"granted": len(granted), "most_held": most_held, "most_running": most_running,
                       "concurrency": plan.concurrency, "busiest_period": busiest,
                       "rate_limit": plan.rate_limit, "bound_per_period": window_bound(plan.rate_limit)}
    if most_held > plan.concurrency or most_running > plan.concurrency:
        verdict.failures.append(f"{tool}: {most_held} permits held / {most_running} calls running at once, "
                                f"over its concurrency {plan.concurrency}")
    if busiest > window_bound(plan.rate_limit):
        verdict.failures.append(f"{tool}: {busiest} permits in one period, over {window_bound(plan.rate_limit)}")


def check_payments(database_url: str, succeeded: set[str], verdict: Verdict) -> None:
    """One fakepay charge per succeeded run (its customer), none doubled, and a ledger
    row per succeeded run naming that charge with its amount."""
    with psycopg.connect(database_url) as conn:
        charges = conn.execute("SELECT customer, id, amount FROM fakepay_charges").fetchall()
        ledger = conn.execute("SELECT run_id, charge_id, amount FROM ledger").fetchall()
    per_customer: dict[str, list[tuple[str, int]]] = {}
    for customer, charge_id, amount in charges:
        per_customer.setdefault(customer, []).append((charge_id, amount))
    doubled = {c: rows for c, rows in per_customer.items() if len(rows) > 1}
    verdict.duplicated = len(doubled)
    if doubled:
        verdict.failures.append(f"{len(doubled)} customer(s) charged more than once: {list(doubled)[:5]}")
    per_run: dict[str, list[tuple[str, int]]] = {}
    for run_id, charge_id, amount in ledger:
        per_run.setdefault(run_id, []).append((charge_id, amount))
    charge_ids = {charge_id: amount for rows in per_customer.values() for charge_id, amount in rows}
    missing = [r for r in succeeded if len(per_run.get(r, [])) != 1]
    if missing:
        verdict.failures.append(f"{len(missing)} succeeded run(s) without exactly one ledger row: {missing[:5]}")
    mismatched = [r for r, rows in per_run.items() if any(charge_ids.get(c) != a for c, a in rows)]
    if mismatched:
        verdict.failures.append(f"{len(mismatched)} ledger row(s) naming no charge of that amount: {mismatched[:5]}")
    if len(charges) < len(succeeded):
        verdict.failures.append(f"{len(succeeded) - len(charges)} succeeded run(s) without a charge")


def check_read_model(stack: Any, verdict: Verdict, timeout_s: float = 120.0) -> None:
    """Fold ``events`` afresh into a new schema and compare every table with the live one
    once the live projector reached the same offsets."""
    report = rebuild_projections(stack.kafka, stack.topics, stack.database_url, swap=False)
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        while True:
            rows = conn.execute("SELECT topic, partition, next_offset FROM readmodel.projector_offsets").fetchall()
            live = {(t, p): o for t, p, o in rows}
            behind = [tp for tp, o in report.offsets.items() if o is not None and live.get(tp, -1) < o]
            if not behind or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if behind:
            verdict.failures.append(f"live projector behind a fresh fold on {behind}")
        for table in READ_MODEL_TABLES:
            differ = conn.execute(sql.SQL(
                "SELECT count(*) FROM ((SELECT * FROM {a}.{t} EXCEPT SELECT * FROM {b}.{t}) UNION ALL "
                "(SELECT * FROM {b}.{t} EXCEPT SELECT * FROM {a}.{t})) AS d").format(
                a=sql.Identifier("readmodel"), b=sql.Identifier(report.schema), t=sql.Identifier(table))).fetchone()
            if differ and differ[0]:
                verdict.failures.append(f"read model table {table}: {differ[0]} row(s) differ from a fresh fold")
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(report.schema)))
