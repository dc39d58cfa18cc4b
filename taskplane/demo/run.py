"""``taskplane demo``: the whole pipeline on a real broker and a real Postgres.

Starts (or reuses) Kafka and Postgres, creates topics under a fresh prefix, applies
document-pipeline and payment-processor with short leases and backoffs, runs the
orchestrator, breaker and projector in threads and two worker processes, submits a
batch of runs, SIGKILLs the worker holding a payment's lease between stripe.charge and
ledger.record, dead-letters a payment whose account is on hold, lifts the hold and
replays it, then prints a summary. ``DemoReport.ok`` says whether every run ended as
expected (no duplicate charge included).
"""

from __future__ import annotations

import gc
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from taskplane._examples import DOCUMENTS as DOCUMENTS_DIR
from taskplane._examples import tools_module
from taskplane.contract import messages as m
from taskplane.contract.plan import SystemDefinition
from taskplane.demo import approval, budget
from taskplane.demo.payments import lift_hold, place_hold
from taskplane.demo.report import DemoReport, collect_report
from taskplane.devstack.stack import Endpoints, ensure_stack
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing.stack import (
    EventLog,
    ProcessorThreads,
    WorkerProcess,
    compile_manifest,
    example_manifest,
    manifest_with,
    worker_env,
)

# Short enough that a takeover and three retries fit in seconds.
DEMO_EXECUTION = {"leaseTimeout": "2s", "maxRetries": 3, "initialBackoff": "250ms", "backoffMultiplier": 2.0,
                  "maxBackoffCap": "2s", "jitterFraction": 0.1}
# One limited tool: every worker's risk checks share 2 at once and 20 a second (docs/scheduling.md).
RISK_CHECK = {"risk.check": {"timeout": "5s", "concurrency": 2, "rateLimit": "20/s"}}
DOCUMENTS = str(DOCUMENTS_DIR)
SERVES = {"document-pipeline": tools_module("document-pipeline"),
          "payment-processor": "taskplane.demo.payments",
          approval.SYSTEM: "taskplane.demo.approval",
          budget.SYSTEM: "taskplane.demo.budget"}
# The window between the crash payment's charge and its ledger record, in which the demo
# SIGKILLs its worker; the kill ends it (a retry does not pause). Longer than the demo
# loop's slowest turn: the approval scene runs the CLI in that loop, and with 4 s the
# worker once finished the payment before the kill (CI: no lease expired, no takeover).
PAUSE_AFTER_CHARGE_S = 20.0


def demo_systems() -> dict[str, SystemDefinition]:
    documents = compile_manifest(manifest_with(example_manifest("document-pipeline"), DEMO_EXECUTION))
    payments = compile_manifest(manifest_with(example_manifest("payment-processor"), DEMO_EXECUTION,
                                              {"payment-processor": [RISK_CHECK]}))
    refunds = compile_manifest(approval.MANIFEST)
    research = compile_manifest(budget.MANIFEST)
    return {d.name: d for d in (documents, payments, refunds, research)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _create_tables(database_url: str) -> None:
    """The examples' tools create their tables on first use; concurrent first uses race
    in Postgres (CREATE TABLE IF NOT EXISTS is not atomic), so create them up front."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS document_results (run_id text PRIMARY KEY, "
                     "results jsonb NOT NULL, idempotency_key text NOT NULL, "
                     "stored_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("CREATE TABLE IF NOT EXISTS ledger (charge_id text PRIMARY KEY, run_id text NOT NULL, "
                     "amount bigint NOT NULL, currency text NOT NULL, "
                     "recorded_at timestamptz NOT NULL DEFAULT now())")


def _wait_for_workers(kafka: dict[str, Any], prefix: str, count: int, say: Callable[[str], None],
                      timeout_s: float = 30.0) -> None:
    """Until every system's worker group has ``count`` members: runs submitted before
    the group settles are handed out twice (once per rebalance)."""
    admin = kafka_clients.admin(kafka)
    groups = [f"{prefix}.workers.{system}" for system in SERVES]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            described = {g: f.result() for g, f in admin.describe_consumer_groups(groups).items()}
        except KafkaException:  # a fresh broker's group coordinator is still loading
            time.sleep(0.3)
            continue
        if all(len(d.members) >= count and str(d.state).endswith("STABLE") for d in described.values()):
            say(f"worker groups stable: {count} members each")
            return
        time.sleep(0.3)
    say("warning: worker groups did not settle; going on")


class _Scenario:
    """Watches the log and plays the two incidents: a worker killed mid-payment and a
    dead letter fixed and replayed. ``step()`` is called from the progress loop."""

    def __init__(self, say: Callable[[str], None], log: EventLog, workers: list[WorkerProcess],
                 spawn: Callable[[str], WorkerProcess], publisher: Publisher, database_url: str,
                 crash_run: str, held_run: str, held_customer: str) -> None:
        self.say, self.log, self.workers, self.spawn = say, log, workers, spawn
        self.publisher, self.database_url = publisher, database_url
        self.crash_run, self.held_run, self.held_customer = crash_run, held_run, held_customer
        self.killed: tuple[str, int, float] | None = None  # worker id, epoch, when
        self.takeover: str | None = None
        self.dead_lettered = False
        self.replayed = False
        self._retries_told: set[int] = set()

    def step(self) -> None:
        self._crash()
        self._dead_letter()

    def _crash(self) -> None:
        if self.killed is None:
            charged = [e for e in self.log.events(m.ToolCallSucceeded, self.crash_run) if e.tool == "stripe.charge"]
            if not charged:
                return
            grant = self.log.events(m.LeaseGranted, self.crash_run)[-1]
            victim = next(w for w in self.workers if w.owns(grant.worker_id))
            victim.kill()
            self.killed = (grant.worker_id, grant.epoch, time.monotonic())
            self.say(f"[bold red]SIGKILL[/] {victim.name} (pid {victim.pid}): it held the lease on payment "
                     f"{self.crash_run[:8]} (epoch {grant.epoch}) after stripe.charge, before ledger.record")
            self.workers.remove(victim)
            replacement = self.spawn(f"w{len(self.workers) + 2}")
            self.workers.append(replacement)
            self.say(f"started {replacement.name} in its place; waiting for the lease to expire")
        elif self.takeover is None:
            worker_id, epoch, when = self.killed
            grants = [g for g in self.log.events(m.LeaseGranted, self.crash_run) if g.epoch > epoch]
            done = self.log.events(m.TaskSucceeded, self.crash_run)
            if grants and done:
                expired = self.log.events(m.LeaseExpired, self.crash_run)
                self.takeover = grants[-1].worker_id
                calls = [e.tool for e in self.log.events(m.ToolCallSucceeded, self.crash_run)]
                self.say(f"[green]takeover[/]: lease epoch {epoch} of {worker_id} expired "
                         f"({len(expired)} expiry); {self.takeover} got epoch {grants[-1].epoch} and finished "
                         f"{time.monotonic() - when:.1f}s after the kill; tool calls on the log: {calls} "
                         "(stripe.charge once: the journal answered the retry)")

    def _dead_letter(self) -> None:
        for retry in self.log.events(m.RetryScheduled, self.held_run):
            if retry.attempt not in self._retries_told:
                self._retries_told.add(retry.attempt)
                self.say(f"payment {self.held_run[:8]} failed (account on hold): attempt {retry.attempt} "
                         f"scheduled in {retry.backoff_ms} ms")
        if not self.dead_lettered and self.log.events(m.TaskDeadLettered, self.held_run):
            letter = self.log.events(m.TaskDeadLettered, self.held_run)[-1]
            self.dead_lettered = True
            self.say(f"[bold yellow]dead letter[/]: {self.held_run[:8]}/{letter.task} after {letter.attempts} "
                     f"attempts: {letter.error[:90]}")
            lift_hold(self.database_url, self.held_customer)
            self.say(f"fixed the cause: lifted the hold on {self.held_customer}; replaying the task")
            self.publisher.publish(m.ReplayTask(self.held_run, letter.task, requested_by="demo"))
            self.publisher.flush()
            self.replayed = True


def run_demo(console: Console | None = None, settings: StackSettings | None = None,
             runs_per_system: int = 20, timeout_s: float = 150.0) -> DemoReport:
    console = console or Console(highlight=False, soft_wrap=True)
    say = console.print
    settings = settings or StackSettings()
    prefix = f"demo{time.strftime('%Y%m%d%H%M%S')}{uuid.uuid4().hex[:4]}"
    with ensure_stack(settings, progress=lambda line: say(f"  {line}")) as endpoints:
        # In a function of its own: every Kafka client it made is gone when it returns,
        # before a throwaway stack stops (a live client would retry the dead broker).
        report = _run(console, settings, endpoints, prefix, runs_per_system, timeout_s)
        gc.collect()  # runtimes sit in reference cycles (consumer callbacks): free their producers now
        return report


def _run(console: Console, settings: StackSettings, endpoints: Endpoints, prefix: str, runs_per_system: int,
         timeout_s: float) -> DemoReport:
    say = console.print
    started = time.monotonic()
    with ExitStack() as undo:
        bootstrap, database = endpoints.bootstrap_servers, endpoints.database_url
        say(f"kafka {bootstrap}, postgres {database.split('@')[-1]}")
        kafka = settings.kafka_config(bootstrap, {"log_level": 3})  # librdkafka: errors only
        topics = Topics(prefix)
        report = ensure_topics(kafka_clients.admin(kafka), topics, catalog())
        say(f"topics: {len(report.created)} created under prefix [bold]{prefix}[/]")

        systems = demo_systems()
        publisher = Publisher(kafka, topics)
        undo.callback(publisher.flush)
        for definition in systems.values():
            publisher.define_system(definition)
            policy = definition.plan.execution
            say(f"applied {definition.name} {definition.version} ({len(definition.plan.agents)} agents; lease "
                f"{policy.lease_timeout_ms} ms, maxRetries {policy.max_retries}, backoff "
                f"{policy.initial_backoff_ms} ms x{policy.backoff_multiplier:g})")
        publisher.flush()

        from taskplane._examples.fakepay import serve

        _create_tables(database)
        fakepay = serve(0, database)
        threading.Thread(target=fakepay.serve_forever, daemon=True).start()
        undo.callback(fakepay.shutdown)
        fakepay_url = f"http://127.0.0.1:{fakepay.server_address[1]}"
        say(f"fakepay on {fakepay_url}")

        from taskplane.metrics import MetricsSettings, ReadModelCollector
        from taskplane.probes import ProcessState, serve_endpoints

        registry = CollectorRegistry()
        registry.register(ReadModelCollector(database, prefix, kafka, topics))
        metrics_server = serve_endpoints("demo", registry, ProcessState(),
                                         MetricsSettings(port=_free_port(), address="127.0.0.1"))
        assert metrics_server is not None
        undo.callback(metrics_server.close)
        metrics_url = f"{metrics_server.url}/metrics"

        undo.enter_context(approval.approval_key())  # the orchestrator checks people's decisions with it
        processors = ProcessorThreads(kafka, topics, database, prefix, registry).start()
        undo.callback(processors.stop)
        say(f"orchestrator, breaker and projector running (read model schema {prefix}); metrics on {metrics_url}")
        log = EventLog(kafka, topics.events)
        undo.callback(log.close)
        governor = EventLog(kafka, topics.breaker_events)  # the tool governor's permits
        undo.callback(governor.close)

        log_dir = Path(tempfile.mkdtemp(prefix=f"taskplane-{prefix}-"))
        env = worker_env(bootstrap, database, prefix, TASKPLANE_FAKEPAY_URL=fakepay_url)
        workers: list[WorkerProcess] = []

        def spawn(name: str) -> WorkerProcess:
            return WorkerProcess(name, SERVES, env, log_dir).start()

        def stop_workers() -> None:
            for worker in workers:
                worker.stop()

        undo.callback(stop_workers)
        workers += [spawn("w1"), spawn("w2")]
        say(f"worker processes w1 (pid {workers[0].pid}) and w2 (pid {workers[1].pid}) serve both systems; "
            f"logs in {log_dir}")

        _wait_for_workers(kafka, prefix, len(workers), say)
        held_customer = f"cus_{prefix}_held"
        place_hold(database, held_customer, "KYC review pending")
        plans = {name: d.plan for name, d in systems.items()}
        crash_run = publisher.submit_run(plans["payment-processor"], {
            "amount": 4200, "currency": "usd", "customer": f"cus_{prefix}_crash",
            "pause_after_charge_s": PAUSE_AFTER_CHARGE_S})
        held_run = publisher.submit_run(plans["payment-processor"],
                                        {"amount": 990, "currency": "usd", "customer": held_customer})
        batch = {"document-pipeline": [publisher.submit_run(plans["document-pipeline"], {"folder": DOCUMENTS})
                                       for _ in range(runs_per_system)],
                 "payment-processor": [publisher.submit_run(plans["payment-processor"], {
                     "amount": 1000 + i, "currency": "usd", "customer": f"cus_{prefix}_{i}"})
                     for i in range(runs_per_system)]}
        refund_run = publisher.submit_run(plans[approval.SYSTEM], {"amount": 1250})
        research_run = publisher.submit_run(plans[budget.SYSTEM], {"topic": "kafka logs"})
        publisher.flush()
        every = [crash_run, held_run, *batch["document-pipeline"], *batch["payment-processor"], refund_run,
                 research_run]
        say(f"submitted {len(every)} runs: {runs_per_system} document-pipeline, {runs_per_system} payments, "
            f"1 payment that pauses after its charge (the crash), 1 payment whose account is on hold, "
            "1 refund that waits for a person's approval, 1 research run its budget stops")

        with Progress(TextColumn("runs completed"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            bar = progress.add_task("runs", total=len(every))
            scenario = _Scenario(progress.console.print, log, workers, spawn, publisher, database,
                                 crash_run, held_run, held_customer)
            refund = approval.ApprovalScene(progress.console.print, log, refund_run, bootstrap, prefix, database)
            research = budget.BudgetScene(progress.console.print, log, research_run, database)
            deadline = time.monotonic() + timeout_s
            wanted = set(every)
            while time.monotonic() < deadline:
                processors.check()
                scenario.step()
                refund.step()
                research.step()
                finished = {e.run_id for e in log.all_events() if isinstance(e, m.RunSucceeded | m.RunFailed |
                                                                          m.RunCancelled) and e.run_id in wanted}
                progress.update(bar, completed=len(finished))
                if len(finished) == len(wanted):
                    break
                time.sleep(0.2)
        summary = collect_report(say, log, database, prefix, batch, crash_run, held_run, scenario.takeover,
                                 metrics_url, time.monotonic() - started, governor)
        for problem in (refund.problem(), research.problem()):
            if problem is not None:
                summary.problems.append(problem)
                say(f"[bold red]NOT OK[/]: {problem}")
        return summary
