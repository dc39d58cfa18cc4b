"""Shared helpers for the decider tests: the seeds' document pipeline and a small
driver over ``InMemoryRunner`` that keeps the log time."""

from __future__ import annotations

from dataclasses import dataclass, field

from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import (
    CancelRun,
    ClaimTask,
    Command,
    CompleteTask,
    Event,
    FailTask,
    FailureKind,
    RecordToolCall,
    ReleaseLease,
    RenewLease,
    ReplayTask,
    SubmitRun,
)
from taskplane.contract.plan import (
    AgentPlan,
    ExecutionPolicy,
    Isolation,
    SystemPlan,
    ToolPlan,
)
from taskplane.contract.state import RunState, TaskState
from taskplane.processors.orchestrator.decider import OrchestratorDecider

RUN = "run-1"
TOOLS = {
    "parser": "document.extract",
    "validator": "schema.validate",
    "summarizer": "text.summarize",
    "publisher": "database.store",
}


def document_pipeline(policy: ExecutionPolicy | None = None, *, name: str = "document-pipeline") -> SystemPlan:
    """parser → validator + summarizer → publisher, as in the seeds."""

    def agent(agent_name: str, *deps: str) -> AgentPlan:
        tool = ToolPlan(TOOLS[agent_name], 5_000, 2, Isolation.NONE, 3, 30_000)
        return AgentPlan(agent_name, "gpt-4", (tool,), deps)

    return SystemPlan(
        name,
        "v1",
        (
            agent("parser"),
            agent("validator", "parser"),
            agent("summarizer", "parser"),
            agent("publisher", "validator", "summarizer"),
        ),
        policy or ExecutionPolicy(),
    )


@dataclass
class Driver:
    """One run driven through the runner; ``now`` is the log time of the next command."""

    plan: SystemPlan = field(default_factory=document_pipeline)
    run_id: str = RUN
    now: int = 1_000
    runner: InMemoryRunner[RunState, Command, Event] = field(
        default_factory=lambda: InMemoryRunner.of(OrchestratorDecider()))

    @property
    def state(self) -> RunState:
        state = self.runner.states[self.run_id]
        assert state is not None
        return state

    def task(self, name: str) -> TaskState:
        return self.state.tasks[name]

    def send(self, command: Command) -> list[Event]:
        return self.runner.handle(self.run_id, command, self.now)

    def advance(self, ms: int) -> list[Event]:
        self.now += ms
        return self.runner.advance(self.now)

    def submit(self, input: str = '{"path": "docs/"}') -> list[Event]:
        return self.send(SubmitRun(self.run_id, self.plan, input))

    def claim(self, task: str, worker: str = "w1", attempt: int | None = None) -> list[Event]:
        return self.send(ClaimTask(self.run_id, task, attempt or self.task(task).attempt, worker))

    def renew(self, task: str, worker: str = "w1", epoch: int | None = None) -> list[Event]:
        return self.send(RenewLease(self.run_id, task, worker, epoch or self.task(task).epoch))

    def release(self, task: str, worker: str = "w1") -> list[Event]:
        return self.send(ReleaseLease(self.run_id, task, worker, self.task(task).epoch))

    def record(self, task: str, index: int = 0, *, ok: bool = True, worker: str = "w1",
               epoch: int | None = None, key: str | None = None) -> list[Event]:
        tool = TOOLS[task]
        return self.send(RecordToolCall(
            self.run_id, task, worker, epoch or self.task(task).epoch, key or f"{task}/{tool}/{index}", tool,
            index, ok, '{"ok": true}' if ok else None, None if ok else "boom"))

    def complete(self, task: str, worker: str = "w1", epoch: int | None = None,
                 output: str | None = None) -> list[Event]:
        return self.send(CompleteTask(self.run_id, task, worker, epoch or self.task(task).epoch,
                                      output or f'{{"{task}": "done"}}'))

    def fail(self, task: str, worker: str = "w1", kind: FailureKind = FailureKind.ERROR,
             retry_after_ms: int = 0, error: str = "boom") -> list[Event]:
        return self.send(FailTask(self.run_id, task, worker, self.task(task).epoch, error, kind, retry_after_ms))

    def replay(self, task: str) -> list[Event]:
        return self.send(ReplayTask(self.run_id, task))

    def cancel(self, reason: str = "operator") -> list[Event]:
        return self.send(CancelRun(self.run_id, reason))

    def run_task(self, task: str, worker: str = "w1") -> list[Event]:
        """Claim, two tool calls, complete."""
        self.claim(task, worker)
        self.record(task, 0, worker=worker)
        self.record(task, 1, worker=worker)
        return self.complete(task, worker)

    def retry_until_ready(self, task: str) -> None:
        """Advance the log time to the task's retry due time."""
        due = self.task(task).retry_due_ms
        assert due is not None
        self.advance(due - self.now)


def types(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]
