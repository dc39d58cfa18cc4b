"""Approval scenarios over the decider: the document pipeline whose publisher's
``database.store`` waits for a person (docs/governance.md, "Approvals")."""

from __future__ import annotations

from dataclasses import replace

from taskplane.contract.approvals import sign
from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import DecideApproval, Event, RequestApproval
from taskplane.contract.plan import SystemPlan
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from tests.processors._decider_helpers import Driver, document_pipeline

KEY = b"a person's key"
TTL_MS = 60_000
CALL = "publisher/database.store/0"


def approval_pipeline() -> SystemPlan:
    plan = document_pipeline()
    agents = tuple(
        replace(agent, tools=tuple(replace(tool, approval_required=True, approval_ttl_ms=TTL_MS, operation="write")
                                   for tool in agent.tools)) if agent.name == "publisher" else agent
        for agent in plan.agents)
    return replace(plan, agents=agents)


def approval_driver(key: bytes | None = KEY) -> Driver:
    return Driver(approval_pipeline(), runner=InMemoryRunner.of(OrchestratorDecider(approval_key=key)))


def ask(run: Driver, worker: str = "w1", key: str = CALL) -> list[Event]:
    """Run the pipeline up to the publisher's call, which asks for approval."""
    if run.run_id not in run.runner.states:
        run.submit()
    if run.task("publisher").status.value == "pending":
        for task in ("parser", "validator", "summarizer"):
            run.run_task(task)
    if run.task("publisher").status.value == "ready":
        run.claim("publisher", worker)
    return run.send(RequestApproval(run.run_id, "publisher", worker, run.task("publisher").epoch, key,
                                    "database.store", 0, '{"rows": 3}', "writes the summary"))


def decide(run: Driver, granted: bool, *, who: str = "ada", key: bytes | None = KEY,
           approval_id: str = CALL, signature: str | None = None, reason: str = "looks right") -> list[Event]:
    decided = run.now
    if signature is None:
        signature = sign(key, approval_id, granted, who, decided) if key else ""
    return run.send(DecideApproval(run.run_id, approval_id, granted, who, decided, reason, signature))


def approval_pending() -> Driver:
    run = approval_driver()
    ask(run)
    run.advance(1_000)
    return run


def approval_granted() -> Driver:
    run = approval_driver()
    ask(run)
    run.advance(1_000)
    decide(run, True)
    run.claim("publisher", "w2")
    run.record("publisher", 0, worker="w2", key=CALL)
    run.complete("publisher", "w2")
    return run


def approval_denied() -> Driver:
    run = approval_driver()
    ask(run)
    decide(run, False, reason="not today")
    return run


def approval_expired() -> Driver:
    run = approval_driver()
    ask(run)
    run.advance(TTL_MS + 1)
    return run
