"""Prometheus metrics of every taskplane process (names documented in docs/metrics.md).

Three sources, each registered on a ``CollectorRegistry`` the process passes in (no
module-level metrics):
- ``PrometheusObserver``: a ``RuntimeObserver`` in the orchestrator/breaker processes,
  counting what their events say (dead-letter transitions, lease renewals and
  expirations, retries by agent and tool, time to completion, breaker transitions).
- ``WorkerMetrics``: counters the worker runtime increments (lease renewal failures).
- ``PermitCollector``: a worker's tool calls waiting for a permit and permits received,
  by tool (``workers/permits.py``), read at scrape time; ``StartedAheadCollector``: its
  follow-on tasks started ahead of their grant (``workers/speculation.py``).
- ``ReadModelCollector``: gauges computed at scrape time from the Postgres read model
  (tasks by status, dead letters, blocked tasks, pending-task age, breaker state) and
  consumer lag per group. State-derived gauges come from the read model, not the
  orchestrator's in-memory state: one process sees every partition, and scrape
  threads never touch the processor loop's dicts.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskplane.contract import breaker as b
from taskplane.contract import messages as m
from taskplane.contract import permits as p
from taskplane.contract.governance import MICROS, Usage
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.topics import Topics

log = logging.getLogger(__name__)

BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class MetricsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPLANE_METRICS_", extra="ignore")

    port: int | None = Field(default=None, ge=0, le=65535, description=(
        "HTTP port of /metrics, /healthz and /readyz; unset: the role's default "
        "(taskplane.probes.ROLE_PORTS, a free port when that is taken); 0 turns them off."))
    address: str = Field(default="127.0.0.1", description="0.0.0.0 in containers (the image sets it).")
    pending_age_sla_s: float = Field(default=300.0, description="Documented SLA the alert rule compares with.")


class WorkerMetrics:
    """What the worker runtime counts; ``lease_renewal_failures.labels(agent, reason).inc()``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lease_renewal_failures = Counter(
            "taskplane_lease_renewal_failures",
            "Lease renewals a worker could not get through (send failed, rejected, or too late).",
            ["agent", "reason"],
            registry=registry,
        )


class PermitCollector(Collector):
    """A worker's side of the tool governor: ``source()`` gives the worker's ``Permits``
    (its ``waiting`` and ``granted`` counters by tool), or None before it exists."""

    def __init__(self, source: Callable[[], Any]) -> None:
        self._source = source

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        permits = self._source()
        waiting = GaugeMetricFamily("taskplane_tool_calls_waiting_for_permit",
                                    "Tool calls of this worker waiting for a permit (rate limit or concurrency).",
                                    labels=["tool"])
        granted = CounterMetricFamily("taskplane_tool_permits_received",
                                      "Permits this worker received from the tool governor.", labels=["tool"])
        if permits is not None:
            for tool, count in sorted(dict(permits.waiting).items()):
                waiting.add_metric([tool], count)
            for tool, count in sorted(dict(permits.granted).items()):
                granted.add_metric([tool], count)
        yield waiting
        yield granted


class StartedAheadCollector(Collector):
    """Tasks a worker started ahead of their grant (``workers/speculation.py``);
    ``source()`` gives the count, or None before the worker exists."""

    def __init__(self, source: Callable[[], int | None]) -> None:
        self._source = source

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        started = CounterMetricFamily("taskplane_tasks_started_ahead",
                                      "Follow-on tasks this worker started before their grant arrived "
                                      "(the completion that decided the grant was its own).")
        started.add_metric([], self._source() or 0)
        yield started


class PrometheusObserver(RuntimeObserver):
    """Counts the events a processor emits. Pass to ``orchestrator_runtime(observer=...)``."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time,
                 max_tracked: int = 100_000) -> None:
        self._clock = clock
        self._max_tracked = max_tracked
        self._ready_at: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._failed_tool: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._submitted: OrderedDict[str, int] = OrderedDict()
        self._systems: OrderedDict[str, str] = OrderedDict()  # run -> system, for the usage labels
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}  # bounded: label values are names

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        self.dead_letter_transitions = counter(
            "taskplane_dead_letter_transitions", "Tasks moved to the dead-letter topic.", ["agent"])
        self.lease_grants = counter("taskplane_lease_grants", "Leases granted.", ["agent"])
        self.lease_renewals = counter("taskplane_lease_renewals", "Lease renewals accepted.", ["agent"])
        self.lease_expirations = counter(
            "taskplane_lease_expirations", "Leases that expired (worker died or stalled).", ["agent"])
        self.lease_renewals_rejected = counter(
            "taskplane_lease_renewals_rejected", "RenewLease commands the orchestrator rejected.")
        self.retries = counter("taskplane_retries", "Retries scheduled, by agent and failing tool.",
                               ["agent", "tool"])
        self.attempt_failures = counter("taskplane_attempt_failures", "Failed attempts.", ["agent", "kind"])
        self.tasks_succeeded = counter("taskplane_tasks_succeeded", "Tasks succeeded.", ["agent"])
        self.tasks_blocked = counter("taskplane_task_blocked_transitions",
                                     "Tasks blocked by a dead-lettered dependency.", ["agent"])
        self.replays = counter("taskplane_task_replays", "Dead-lettered tasks replayed.", ["agent"])
        self.runs_finished = counter("taskplane_runs_finished", "Runs finished.", ["status"])
        self.commands_rejected = counter("taskplane_commands_rejected", "Commands rejected.", ["command"])
        self.breaker_transitions = counter("taskplane_breaker_transitions", "Breaker transitions.",
                                           ["tool", "to"])
        self.permits_granted = counter("taskplane_permits_granted",
                                       "Tool permits the governor granted (new ones, not hand-overs).", ["tool"])
        self.permits_queued = counter("taskplane_permits_queued",
                                      "Permit requests that had to wait (rate limit or concurrency).", ["tool"])
        self.permits_expired = counter("taskplane_permits_expired",
                                       "Permits released by expiry: their holder never reported.", ["tool"])
        self.tokens = counter("taskplane_tokens", "Tokens reported by agents and tools (docs/governance.md).",
                              ["system", "agent", "model"])
        self.cost = counter("taskplane_cost", "Cost reported by agents and tools, in the currency's units.",
                            ["system", "agent", "model"])
        self.task_completion = Histogram(
            "taskplane_task_completion_seconds",
            "From a task's first readiness to its success, as observed by the orchestrator.",
            ["agent"], buckets=DURATION_BUCKETS, registry=registry)
        self.run_duration = Histogram(
            "taskplane_run_duration_seconds", "From submission to success (log times).",
            buckets=DURATION_BUCKETS, registry=registry)
        self.batches = Histogram("taskplane_processor_batch_seconds", "Processor transaction time.",
                                 ["processor"], registry=registry)
        self.commits = Histogram("taskplane_processor_commit_seconds",
                                 "Of a processor's transaction time, send_offsets and commit (broker round trips).",
                                 ["processor"], registry=registry)
        self.records = counter("taskplane_processor_records", "Records a processor consumed.", ["processor"])
        self.poison_records = counter("taskplane_poison_records", "Records sent to `poison`.", ["processor", "topic"])
        self.aborted_transactions = counter("taskplane_processor_transactions_aborted", "Aborted transactions.",
                               ["processor"])
        self.restore = Histogram("taskplane_state_restore_seconds", "State restore time on assignment.",
                                 ["processor"], registry=registry)

    def _labelled(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per label values: ``labels`` checks and
        locks on every call (a tenth of the orchestrator's event hook at saturation)."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # ------------------------------------------------------------ runtime hooks

    def batch(self, processor: str, records: int, seconds: float) -> None:
        self._labelled(self.batches, processor).observe(seconds)
        self._labelled(self.records, processor).inc(records)

    def committed(self, processor: str, seconds: float) -> None:
        self._labelled(self.commits, processor).observe(seconds)

    def poison(self, processor: str, topic: str, error: str) -> None:
        self._labelled(self.poison_records, processor, topic).inc()

    def aborted(self, processor: str) -> None:
        self._labelled(self.aborted_transactions, processor).inc()

    def restored(self, processor: str, keys: int, seconds: float) -> None:
        self._labelled(self.restore, processor).observe(seconds)

    def event(self, processor: str, event: object) -> None:
        match event:
            case m.RunSubmitted(run_id=run, submitted_ms=submitted, plan=plan):
                self._remember(self._submitted, run, submitted)
                self._remember(self._systems, run, plan.name)
            case m.ToolCallSucceeded(usage=usage) if usage:
                self._used(event.run_id, event.task, usage)
            case m.TaskReady(run_id=run, task=task):
                if (run, task) not in self._ready_at:
                    self._remember(self._ready_at, (run, task), self._clock())
            case m.LeaseGranted(task=task):
                self._labelled(self.lease_grants, task).inc()
            case m.LeaseRenewed(task=task):
                self._labelled(self.lease_renewals, task).inc()
            case m.LeaseExpired(task=task):
                self._labelled(self.lease_expirations, task).inc()
            case m.ToolCallFailed(run_id=run, task=task, tool=tool):
                self._remember(self._failed_tool, (run, task), tool)
                if event.usage:
                    self._used(run, task, event.usage)
            case m.AttemptFailed(task=task, kind=kind):
                self._labelled(self.attempt_failures, task, kind.value).inc()
                if event.usage:
                    self._used(event.run_id, task, event.usage)
            case m.RetryScheduled(run_id=run, task=task):
                self._labelled(self.retries, task, self._failed_tool.pop((run, task), "none")).inc()
            case m.TaskSucceeded(run_id=run, task=task):
                self._labelled(self.tasks_succeeded, task).inc()
                if event.usage:
                    self._used(run, task, event.usage)
                self._failed_tool.pop((run, task), None)
                ready = self._ready_at.pop((run, task), None)
                if ready is not None:
                    self._labelled(self.task_completion, task).observe(max(0.0, self._clock() - ready))
            case m.TaskDeadLettered(run_id=run, task=task):
                self._labelled(self.dead_letter_transitions, task).inc()
                self._failed_tool.pop((run, task), None)
            case m.TaskBlocked(task=task):
                self._labelled(self.tasks_blocked, task).inc()
            case m.TaskReplayed(task=task):
                self._labelled(self.replays, task).inc()
            case m.RunSucceeded(run_id=run, finished_ms=finished):
                self._labelled(self.runs_finished, "succeeded").inc()
                submitted = self._submitted.pop(run, None)
                self._systems.pop(run, None)
                if submitted is not None:
                    self.run_duration.observe(max(0, finished - submitted) / 1000)
            case m.RunFailed(run_id=run) | m.RunCancelled(run_id=run):
                self._labelled(self.runs_finished, "failed" if isinstance(event, m.RunFailed) else "cancelled").inc()
                self._submitted.pop(run, None)
                self._systems.pop(run, None)
            case m.CommandRejected(command=command):
                self._labelled(self.commands_rejected, command).inc()
                if command == "RenewLease":
                    self.lease_renewals_rejected.inc()
            case b.BreakerOpened(tool=tool):
                self._labelled(self.breaker_transitions, tool, "open").inc()
            case b.BreakerHalfOpened(tool=tool):
                self._labelled(self.breaker_transitions, tool, "half_open").inc()
            case b.BreakerClosed(tool=tool):
                self._labelled(self.breaker_transitions, tool, "closed").inc()
            case p.PermitGranted(tool=tool, token=True):
                self._labelled(self.permits_granted, tool).inc()
            case p.PermitQueued(tool=tool):
                self._labelled(self.permits_queued, tool).inc()
            case p.PermitReleased(tool=tool, reason="expired"):
                self._labelled(self.permits_expired, tool).inc()

    def _used(self, run: str, task: str, usage: tuple[Usage, ...]) -> None:
        system = self._systems.get(run, "unknown")  # a run submitted before this process started
        for report in usage:
            if report.tokens:
                self._labelled(self.tokens, system, task, report.model).inc(report.tokens)
            if report.cost_micros:
                self._labelled(self.cost, system, task, report.model).inc(report.cost_micros / MICROS)

    def _remember(self, table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value
        while len(table) > self._max_tracked:  # bounded: a lost sample beats a leak
            table.popitem(last=False)


class ReadModelCollector(Collector):
    """Gauges from the read model and consumer lag, computed on each scrape."""

    def __init__(self, database_url: str, schema: str, kafka_config: dict[str, Any] | None,
                 topics: Topics, clock: Callable[[], float] = time.time) -> None:
        self._dsn = database_url
        self._schema = schema
        self._kafka = kafka_config
        self._topics = topics
        self._clock = clock

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # computed at scrape; nothing to check at registration

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            yield from self._from_read_model()
        except Exception as error:  # a scrape must not fail because Postgres blinked
            log.warning("read-model metrics unavailable: %s", error)
        if self._kafka is not None:
            try:
                yield self._lag()
            except Exception as error:
                log.warning("consumer lag unavailable: %s", error)

    def _from_read_model(self) -> Iterable[GaugeMetricFamily]:
        from taskplane.processors.projector.schema import connect

        now_ms = int(self._clock() * 1000)
        with connect(self._dsn, self._schema, autocommit=True) as conn:
            by_status: list[Any] = conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall()
            dead: list[Any] = conn.execute(
                "SELECT system, count(*) FROM dead_letters WHERE status = 'open' GROUP BY system").fetchall()
            blocked: list[Any] = conn.execute(
                "SELECT r.system, count(*) FROM tasks t JOIN runs r USING (run_id)"
                " WHERE t.status = 'blocked' GROUP BY r.system").fetchall()
            ages: Any = conn.execute(
                "SELECT count(*), max(%s - waiting_since_ms),"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY %s - waiting_since_ms),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY %s - waiting_since_ms)"
                " FROM tasks WHERE status IN ('ready', 'backoff') AND waiting_since_ms IS NOT NULL",
                (now_ms, now_ms, now_ms)).fetchone()
            approvals: Any = conn.execute(
                "SELECT count(*), max(%s - waiting_since_ms) FROM tasks WHERE status = 'awaiting_approval'",
                (now_ms,)).fetchone()
            breakers: list[Any] = conn.execute("SELECT tool, status, consecutive_failures FROM breakers").fetchall()
            stored: list[Any] = conn.execute("SELECT topic, partition, next_offset FROM projector_offsets").fetchall()
        tasks = GaugeMetricFamily("taskplane_tasks", "Tasks in the read model by status.", labels=["status"])
        counts = {str(status): int(n) for status, n in by_status}
        for status in ("pending", "ready", "leased", "backoff", "succeeded", "dead_lettered", "blocked",
                       "failed", "cancelled", "awaiting_approval"):
            tasks.add_metric([status], counts.get(status, 0))
        yield tasks
        yield GaugeMetricFamily("taskplane_tasks_in_progress", "Tasks holding a live lease.",
                                value=counts.get("leased", 0))
        dead_family = GaugeMetricFamily("taskplane_dead_letter_tasks", "Open dead letters.", labels=["system"])
        for system, n in dead:
            dead_family.add_metric([str(system)], int(n))
        yield dead_family
        yield GaugeMetricFamily("taskplane_dead_letter_tasks_total_open", "Open dead letters, all systems.",
                                value=sum(int(n) for _, n in dead))
        blocked_family = GaugeMetricFamily("taskplane_blocked_tasks", "Tasks blocked by a dead letter.",
                                           labels=["system"])
        for system, n in blocked:
            blocked_family.add_metric([str(system)], int(n))
        yield blocked_family
        waiting, oldest, p50, p99 = ages if ages is not None else (0, None, None, None)
        age = GaugeMetricFamily("taskplane_pending_task_age_seconds",
                                "Age of tasks waiting for a worker (ready or in backoff).", labels=["quantile"])
        for quantile, value in (("0.5", p50), ("0.99", p99), ("1", oldest)):
            age.add_metric([quantile], float(value or 0) / 1000)
        yield age
        yield GaugeMetricFamily("taskplane_oldest_pending_task_age_seconds", "Oldest waiting task's age.",
                                value=float(oldest or 0) / 1000)
        yield GaugeMetricFamily("taskplane_pending_tasks", "Tasks waiting for a worker.", value=int(waiting or 0))
        asking, longest = approvals if approvals is not None else (0, None)
        yield GaugeMetricFamily("taskplane_pending_approvals", "Tool calls waiting for a person's decision.",
                                value=int(asking or 0))
        yield GaugeMetricFamily("taskplane_oldest_pending_approval_age_seconds",
                                "How long the oldest pending approval has waited.", value=float(longest or 0) / 1000)
        state = GaugeMetricFamily("taskplane_breaker_state", "Breaker per tool: 0 closed, 1 half-open, 2 open.",
                                  labels=["tool"])
        failures = GaugeMetricFamily("taskplane_breaker_consecutive_failures", "Consecutive failures per tool.",
                                     labels=["tool"])
        for tool, status, consecutive in breakers:
            state.add_metric([str(tool)], BREAKER_LEVEL.get(str(status), 0))
            failures.add_metric([str(tool)], int(consecutive))
        yield state
        yield failures
        self._stored = {(str(t), int(p)): int(o) for t, p, o in stored}

    def _lag(self) -> GaugeMetricFamily:
        from taskplane.streams.offsets import committed_offsets, watermarks

        assert self._kafka is not None
        lag = GaugeMetricFamily("taskplane_consumer_lag", "Records not yet processed, per group and topic.",
                                labels=["group", "topic"])
        prefix = self._topics.prefix
        groups = {f"{prefix}.orchestrator": [self._topics.name("commands")],
                  f"{prefix}.breaker": [self._topics.name("tool-outcomes")]}
        for group, group_topics in groups.items():
            for topic in group_topics:
                marks = watermarks(self._kafka, topic)
                try:
                    done = committed_offsets(self._kafka, group, topic)
                except Exception as error:  # no such group yet, coordinator loading: all unread
                    log.debug("lag of %s: %s", group, error)
                    done = {}
                total = sum(high - done.get(p, low) for p, (low, high) in marks.items())
                lag.add_metric([group, topic], max(0, total))
        stored = getattr(self, "_stored", {})
        for role in ("events", "breakers"):
            topic = self._topics.name(role)
            marks = watermarks(self._kafka, topic)
            total = sum(high - stored.get((topic, p), low) for p, (low, high) in marks.items())
            lag.add_metric([f"{prefix}.projector", topic], max(0, total))
        return lag
