"""The demo's summary: figures from the event log, fakepay's table, the ledger, the
read model and the metrics endpoint, and the list of what did not end as expected."""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from taskplane.contract import messages as m
from taskplane.contract.permits import PermitGranted, PermitQueued, PermitReleased
from taskplane.testing.stack import EventLog


@dataclass(slots=True)
class DemoReport:
    runs_submitted: int = 0
    runs_succeeded: int = 0
    retries: int = 0
    lease_expirations: int = 0
    rejected_commands: int = 0
    dead_letters: int = 0
    replayed: int = 0
    takeover_by: str | None = None
    charges: int = 0
    duplicate_charges: int = 0
    charge_requests_deduplicated: int = 0
    ledger_entries: int = 0
    duplicate_ledger_entries: int = 0
    documents_stored: int = 0
    permits_granted: int = 0  # risk.check, the limited tool
    permits_waited: int = 0
    most_holders: int = 0
    read_model_succeeded: int = 0
    p50_ms: int = 0
    p99_ms: int = 0
    metrics_url: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def percentile(values: list[int], fraction: float) -> int:
    """Nearest rank: the smallest value with at least ``fraction`` of values at or below it."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _scrape(url: str) -> dict[str, float]:
    wanted = ("taskplane_runs_finished_total", "taskplane_lease_expirations_total", "taskplane_retries_total",
              "taskplane_dead_letter_transitions_total", "taskplane_task_replays_total",
              "taskplane_permits_granted_total")
    totals: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            name = line.split("{")[0].split(" ")[0]
            if name in wanted:
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def collect_report(say: Callable[[str], None], log: EventLog, database_url: str, schema: str,
                   batch: dict[str, list[str]], crash_run: str, held_run: str, takeover_by: str | None,
                   metrics_url: str, elapsed_s: float, governor: EventLog | None = None) -> DemoReport:
    documents, payments = batch["document-pipeline"], batch["payment-processor"]
    every = [crash_run, held_run, *documents, *payments]
    wanted = set(every)
    report = DemoReport(runs_submitted=len(every), takeover_by=takeover_by, metrics_url=metrics_url)
    mine = [e for e in log.all_events() if getattr(e, "run_id", None) in wanted]
    succeeded = {e.run_id: e.finished_ms for e in mine if isinstance(e, m.RunSucceeded)}
    submitted = {e.run_id: e.submitted_ms for e in mine if isinstance(e, m.RunSubmitted)}
    report.runs_succeeded = len(succeeded)
    report.retries = sum(isinstance(e, m.RetryScheduled) for e in mine)
    report.lease_expirations = sum(isinstance(e, m.LeaseExpired) for e in mine)
    report.rejected_commands = sum(isinstance(e, m.CommandRejected) for e in mine)
    letters = [e for e in mine if isinstance(e, m.TaskDeadLettered)]
    report.dead_letters = len(letters)
    report.replayed = sum(isinstance(e, m.TaskReplayed) for e in mine)
    latencies = [succeeded[r] - submitted[r] for r in documents + payments if r in succeeded and r in submitted]
    report.p50_ms, report.p99_ms = percentile(latencies, 0.5), percentile(latencies, 0.99)

    paying = [crash_run, held_run, *payments]
    customer_prefix = f"cus_{schema}_%"
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT customer), coalesce(sum(requests), 0) "
                           "FROM fakepay_charges WHERE customer LIKE %s", (customer_prefix,)).fetchone()
        assert row is not None
        report.charges, report.duplicate_charges = row[0], row[0] - row[1]
        report.charge_requests_deduplicated = int(row[2]) - row[0]
        row = conn.execute("SELECT count(*), count(DISTINCT run_id) FROM ledger WHERE run_id = ANY(%s)",
                           (paying,)).fetchone()
        assert row is not None
        report.ledger_entries, report.duplicate_ledger_entries = row[0], row[0] - row[1]
        row = conn.execute("SELECT count(*) FROM document_results WHERE run_id = ANY(%s)", (documents,)).fetchone()
        assert row is not None
        report.documents_stored = row[0]
        query = sql.SQL("SELECT count(*) FROM {}.runs WHERE status = 'succeeded' AND run_id = ANY(%s)").format(
            sql.Identifier(schema))
        deadline = time.monotonic() + 20  # the projector trails the log by a batch or two
        while True:
            row = conn.execute(query, (every,)).fetchone()
            assert row is not None
            report.read_model_succeeded = row[0]
            if report.read_model_succeeded >= report.runs_succeeded or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    try:
        report.metrics = _scrape(metrics_url)
    except OSError as error:
        report.problems.append(f"metrics endpoint unreadable: {error}")
    report.elapsed_s = elapsed_s
    if governor is not None:
        _permits(report, governor.all_events())

    expected = {
        "runs succeeded": (report.runs_succeeded, len(every)),
        "dead letters": (report.dead_letters, 1),
        "replays": (report.replayed, 1),
        "charges": (report.charges, len(paying)),
        "duplicate charges": (report.duplicate_charges, 0),
        "ledger entries": (report.ledger_entries, len(paying)),
        "documents stored": (report.documents_stored, len(documents)),
        "read model runs succeeded": (report.read_model_succeeded, report.runs_succeeded),
    }
    for what, (got, want) in expected.items():
        if got != want:
            report.problems.append(f"{what}: {got}, expected {want}")
    if governor is not None and report.most_holders > LIMITED_CONCURRENCY:
        report.problems.append(f"{LIMITED_TOOL}: {report.most_holders} permits held at once, over its "
                               f"concurrency {LIMITED_CONCURRENCY}")
    if takeover_by is None:
        report.problems.append("no other worker took over the killed worker's lease")
    if letters and letters[0].run_id != held_run:
        report.problems.append(f"unexpected dead letter {letters[0].run_id}/{letters[0].task}: {letters[0].error}")
    _print(say, report)
    return report


LIMITED_TOOL, LIMITED_CONCURRENCY = "risk.check", 2  # as taskplane/demo/run.py declares it


def _permits(report: DemoReport, events: list[object]) -> None:
    """The limited tool's permits, from the governor's events: how many, how many waited,
    and the most held at once (never above the tool's concurrency)."""
    holders: set[tuple[str, int]] = set()
    for event in events:
        if getattr(event, "tool", None) != LIMITED_TOOL:
            continue
        if isinstance(event, PermitGranted):
            report.permits_granted += event.token
            holders.add((event.key, event.try_no))
        elif isinstance(event, PermitQueued):
            report.permits_waited += 1
        elif isinstance(event, PermitReleased):
            holders.discard((event.key, event.try_no))
        report.most_holders = max(report.most_holders, len(holders))


def _print(say: Callable[[str], None], r: DemoReport) -> None:
    say("")
    say("[bold]summary[/]")
    say(f"  runs succeeded         {r.runs_succeeded}/{r.runs_submitted}")
    say(f"  run latency            p50 {r.p50_ms} ms, p99 {r.p99_ms} ms (submitted → succeeded, batch runs)")
    say(f"  retries                {r.retries} scheduled; {r.lease_expirations} lease(s) expired; "
        f"{r.rejected_commands} stale command(s) rejected")
    say(f"  lease takeover         {r.takeover_by or 'NOT SEEN'}")
    say(f"  dead letters           {r.dead_letters}, replayed {r.replayed}")
    say(f"  charges                {r.charges}, duplicate charges {r.duplicate_charges} "
        f"({r.charge_requests_deduplicated} repeated request(s) answered by idempotency key)")
    say(f"  ledger entries         {r.ledger_entries}, duplicates {r.duplicate_ledger_entries}")
    say(f"  documents stored       {r.documents_stored}; read model shows {r.read_model_succeeded} runs succeeded")
    say(f"  limited tool           {LIMITED_TOOL} (concurrency {LIMITED_CONCURRENCY}, 20/s fleet-wide): "
        f"{r.permits_granted} permits, {r.permits_waited} call(s) waited, at most {r.most_holders} at once")
    shown = ", ".join(f"{k.removeprefix('taskplane_').removesuffix('_total')}={v:g}" for k, v in r.metrics.items())
    say(f"  metrics                {r.metrics_url} ({shown or 'no samples'})")
    say(f"  elapsed                {r.elapsed_s:.1f} s")
    if r.problems:
        say("[bold red]NOT OK[/]: " + "; ".join(r.problems))
    else:
        say("[bold green]OK[/]: every run ended as expected")
    # The same failures in seconds, without a broker: seeded faults in virtual time (docs/testing.md).
    say("  next: taskplane simulate -f examples/payment-processor/system.yaml "
        "--module examples/payment-processor/tools.py --inputs examples/payment-processor/runs.jsonl --runs 100")
