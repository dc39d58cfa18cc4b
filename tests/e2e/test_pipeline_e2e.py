"""Workers against the real orchestrator on the real broker and Postgres: the DAG
order, takeover after SIGKILL with fencing of the stale holder, and a crash between
stripe.charge and ledger.record that charges and records exactly once."""

from __future__ import annotations

import itertools
import time
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from taskplane._examples import DOCUMENTS as DOCUMENTS_DIR
from taskplane._examples import tools_module
from taskplane.contract import messages as m
from taskplane.streams.partitioning import partition_for
from taskplane.streams.publisher import run_id_for
from taskplane.testing import example_manifest, manifest_with
from tests.e2e.e2e_pipeline import E2E_TOOLS, Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
FAST = {"leaseTimeout": "2s", "maxRetries": 3, "initialBackoff": "200ms", "backoffMultiplier": 2.0,
        "maxBackoffCap": "2s", "jitterFraction": 0.1}
SESSION_TIMEOUT_S = 3.0  # LocalKafka group.consumer.session.timeout.ms: a dead worker's `work` partitions move after this
DOCUMENTS = str(DOCUMENTS_DIR)
SLEEPER = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: sleeper}
spec:
  agents:
    - name: sleeper
      tools: [clock.sleep]
  execution: {leaseTimeout: 2s, maxRetries: 3, initialBackoff: 200ms, maxBackoffCap: 1s}
"""


def _index(log: Any, run_id: str) -> list[Any]:
    """The run's events in log order (one run lives on one partition)."""
    return [e for e in log.all_events() if getattr(e, "run_id", None) == run_id]


def _first(events: list[Any], kind: type, task: str) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, kind) and e.task == task)


def test_the_document_pipeline_runs_in_dependency_order_and_stores_its_results(pipeline: Pipeline) -> None:
    plan = pipeline.define(manifest_with(example_manifest("document-pipeline"), FAST))
    pipeline.worker("w1", {"document-pipeline": tools_module("document-pipeline")})
    runs = [pipeline.publisher.submit_run(plan, {"folder": DOCUMENTS}) for _ in range(3)]
    pipeline.publisher.flush()
    pipeline.wait(lambda log: len({e.run_id for e in log.events(m.RunSucceeded)} & set(runs)) == 3, 45)

    for run_id in runs:
        events = _index(pipeline.log, run_id)
        parser_done = _first(events, m.TaskSucceeded, "parser")
        for middle in ("validator", "summarizer"):
            assert _first(events, m.TaskReady, middle) > parser_done
            assert _first(events, m.LeaseGranted, middle) > parser_done
        middle_done = max(_first(events, m.TaskSucceeded, "validator"), _first(events, m.TaskSucceeded, "summarizer"))
        assert _first(events, m.TaskReady, "publisher") > middle_done
        assert _first(events, m.LeaseGranted, "publisher") > middle_done
        assert isinstance(events[-1], m.RunSucceeded)

    with psycopg.connect(pipeline.database_url) as conn:
        rows = conn.execute("SELECT run_id, results FROM document_results WHERE run_id = ANY(%s)", (runs,)).fetchall()
    assert sorted(r[0] for r in rows) == sorted(runs)
    for _run_id, results in rows:
        names = sorted(d["name"] for d in results["documents"])
        assert names == ["breaker.json", "kafka-log.md", "leases.txt"]
        assert all(d["summary"] and d["valid"] for d in results["documents"])


@pytest.fixture
def wide_root_grant_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requested before ``pipeline``: its orchestrator reads the window at start. Five
    seconds, so the test does not race the default 250 ms on a loaded machine."""
    monkeypatch.setenv("TASKPLANE_ORCHESTRATOR_ROOT_GRANT_WINDOW_MS", "5000")


def test_a_run_submitted_after_a_completion_has_its_root_granted_at_submit(
        wide_root_grant_window: None, pipeline: Pipeline) -> None:
    plan = pipeline.define(manifest_with(example_manifest("document-pipeline"), FAST))
    worker = pipeline.worker("w1", {"document-pipeline": tools_module("document-pipeline")})
    first = pipeline.publisher.submit_run(plan, {"folder": DOCUMENTS})
    pipeline.publisher.flush()
    pipeline.wait(lambda log: first in {e.run_id for e in log.events(m.RunSucceeded)}, 45)
    # Free slots are hints of one partition (docs/orchestrator.md, "Root grants"): the
    # second run is keyed onto the first one's partition.
    commands = pipeline.topics.commands
    partitions = len(AdminClient(pipeline.kafka).list_topics(commands, timeout=10).topics[commands].partitions)
    key = next(key for key in (f"second-{i}" for i in itertools.count())
               if partition_for(run_id_for(plan.name, key), partitions) == partition_for(first, partitions))
    second = pipeline.publisher.submit_run(plan, {"folder": DOCUMENTS}, idempotency_key=key)
    pipeline.publisher.flush()
    pipeline.wait(lambda log: second in {e.run_id for e in log.events(m.RunSucceeded)}, 45)

    # The first run's root was offered on `work` and claimed (no worker had reported yet)...
    offered = [e for e in _index(pipeline.log, first) if isinstance(e, m.TaskReady) and e.task == "parser"]
    assert [e.offered for e in offered] == [True]
    # ...the second one's was granted in the SubmitRun's decision, to the worker whose
    # completion reported free slots, and ran there without a claim.
    events = _index(pipeline.log, second)
    assert [type(e).__name__ for e in events[:3]] == ["RunSubmitted", "TaskReady", "LeaseGranted"]
    ready, granted = events[1], events[2]
    assert isinstance(ready, m.TaskReady) and ready.task == "parser" and not ready.offered
    assert isinstance(granted, m.LeaseGranted) and granted.task == "parser" and worker.owns(granted.worker_id)
    assert isinstance(events[-1], m.RunSucceeded)


def test_a_sigkilled_workers_task_is_taken_over_and_its_late_result_rejected(pipeline: Pipeline) -> None:
    plan = pipeline.define(SLEEPER)
    first = pipeline.worker("w1", {"sleeper": E2E_TOOLS})
    second = pipeline.worker("w2", {"sleeper": E2E_TOOLS})
    run_id = pipeline.publisher.submit_run(plan, {"seconds": 30})
    pipeline.publisher.flush()
    # Mid-task: the lease was granted and renewed at least once (the tool is sleeping).
    pipeline.wait(lambda log: log.events(m.LeaseRenewed, run_id), 30)
    grant = pipeline.log.events(m.LeaseGranted, run_id)[-1]
    holder, survivor = (first, second) if first.owns(grant.worker_id) else (second, first)
    holder.kill()
    killed_at = time.monotonic()

    done = pipeline.wait(lambda log: log.events(m.TaskSucceeded, run_id), 30)[0]
    took = time.monotonic() - killed_at
    new_grant = pipeline.log.events(m.LeaseGranted, run_id)[-1]
    assert survivor.owns(new_grant.worker_id) and new_grant.epoch > grant.epoch
    assert done.epoch == new_grant.epoch
    assert [e.epoch for e in pipeline.log.events(m.LeaseExpired, run_id)] == [grant.epoch]
    # Lease timeout, the first backoff, and (if the retry landed on the dead worker's
    # `work` partition) the group session timeout; plus a few seconds of slack.
    bound = plan.execution.lease_timeout_ms / 1000 + 0.5 + SESSION_TIMEOUT_S + 4
    assert took < bound, f"takeover took {took:.1f}s (bound {bound:.1f}s)"

    # The stale holder's late result (epoch of the killed lease) is refused.
    pipeline.publisher.publish(m.CompleteTask(run_id, "sleeper", grant.worker_id, grant.epoch, '{"late": true}'))
    pipeline.publisher.flush()
    rejected = pipeline.wait(lambda log: [e for e in log.events(m.CommandRejected, run_id)
                                          if e.command == "CompleteTask"], 15)[0]
    assert rejected.worker_id == grant.worker_id
    assert len(pipeline.log.events(m.TaskSucceeded, run_id)) == 1
    assert '"late"' not in done.output


def test_a_crash_between_charge_and_ledger_charges_and_records_once(pipeline: Pipeline, fakepay: str) -> None:
    text = manifest_with(example_manifest("payment-processor"), FAST,
                         {"payment-processor": [{"risk.check": {"timeout": "5s"}}]})
    plan = pipeline.define(text)
    serves = {"payment-processor": "taskplane.demo.payments"}
    first, second = pipeline.worker("w1", serves), pipeline.worker("w2", serves)
    customer = f"cus_{pipeline.schema}"
    run_id = pipeline.publisher.submit_run(plan, {"amount": 4200, "currency": "usd", "customer": customer,
                                                  "pause_after_charge_s": 20})
    pipeline.publisher.flush()
    pipeline.wait(lambda log: [e for e in log.events(m.ToolCallSucceeded, run_id) if e.tool == "stripe.charge"], 30)
    grant = pipeline.log.events(m.LeaseGranted, run_id)[-1]
    (first if first.owns(grant.worker_id) else second).kill()

    pipeline.wait(lambda log: log.events(m.RunSucceeded, run_id), 40)
    calls = [e.tool for e in pipeline.log.events(m.ToolCallSucceeded, run_id)]
    assert calls.count("stripe.charge") == 1, calls  # the retry got the journaled result
    assert calls.count("ledger.record") == 1, calls
    assert pipeline.log.events(m.LeaseExpired, run_id)
    with psycopg.connect(pipeline.database_url) as conn:
        charges = conn.execute("SELECT id, requests FROM fakepay_charges WHERE customer = %s", (customer,)).fetchall()
        ledger = conn.execute("SELECT charge_id FROM ledger WHERE run_id = %s", (run_id,)).fetchall()
    assert len(charges) == 1 and charges[0][1] == 1  # charged once, asked once
    assert [row[0] for row in ledger] == [charges[0][0]]


DIAMOND = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: bench-dag}
spec:
  agents:
    - {name: parser}
    - {name: validator, dependencies: [parser]}
    - {name: summarizer, dependencies: [parser]}
    - {name: publisher, dependencies: [validator, summarizer]}
"""


def test_a_worker_runs_follow_ons_ahead_and_the_orchestrator_grants_it_the_same(pipeline: Pipeline) -> None:
    """workers/speculation.py: the children a completion readies run at once on its
    worker; the orchestrator's grants, decided by that completion, name the same worker,
    attempt and epoch, so nothing is refused and nothing runs twice."""
    import threading

    from bench import _peer_taskplane_agents
    from taskplane.testing import compile_manifest
    from taskplane.workers.sdk import Registry
    from taskplane.workers.settings import WorkerSettings
    from taskplane.workers.worker import Worker

    definition = compile_manifest(DIAMOND)
    pipeline.publisher.define_system(definition)
    pipeline.publisher.flush()  # on the log before the worker reads it at start (else: "not defined")
    worker = Worker(pipeline.kafka, pipeline.topics, "bench-dag", Registry.from_module(_peer_taskplane_agents),
                    WorkerSettings(worker_id="ahead-1", concurrency=8))
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        runs = [pipeline.publisher.submit_run(definition.plan, {"n": i}) for i in range(4)]
        pipeline.publisher.flush()
        pipeline.wait(lambda log: len({e.run_id for e in log.events(m.RunSucceeded)} & set(runs)) == 4, 45)
    finally:
        worker.stop()
        runner.join(30)
    assert worker.speculation is not None and worker.speculation.started == 3 * len(runs)
    for run_id in runs:
        events = _index(pipeline.log, run_id)
        assert not [e for e in events if isinstance(e, m.CommandRejected)]
        grants = {e.task: e for e in events if isinstance(e, m.LeaseGranted)}
        for task in ("validator", "summarizer", "publisher"):
            assert (grants[task].worker_id, grants[task].attempt, grants[task].epoch) == ("ahead-1", 1, 1)
        done = [e.task for e in events if isinstance(e, m.TaskSucceeded)]
        assert sorted(done) == ["parser", "publisher", "summarizer", "validator"]
        assert isinstance(events[-1], m.RunSucceeded)
    assert sorted(task for _run, task, outcome in worker.outcomes if outcome == "CompleteTask") == sorted(
        ["parser", "validator", "summarizer", "publisher"] * len(runs))
