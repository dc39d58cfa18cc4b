"""Random interleavings of every command against the orchestrator, with the
invariants of ARCHITECTURE.md checked after each step: one live lease per task,
fencing by epoch, no early readiness, no double-recorded tool call, no stuck run,
and state == fold of the log."""

from __future__ import annotations

from hypothesis import event as note
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from taskplane.contract.decider import InMemoryRunner, step
from taskplane.contract.messages import (
    AttemptFailed,
    CancelRun,
    ClaimTask,
    Command,
    CommandRejected,
    CompleteTask,
    Event,
    FailTask,
    FailureKind,
    LeaseExpired,
    LeaseGranted,
    LeaseReleased,
    RecordToolCall,
    ReleaseLease,
    RenewLease,
    ReplayTask,
    RunCancelled,
    RunFailed,
    SubmitRun,
    TaskReady,
    TaskReplayed,
    TaskSucceeded,
    ToolCallFailed,
    ToolCallSucceeded,
)
from taskplane.contract.plan import ExecutionPolicy, SystemPlan
from taskplane.contract.replay import Given
from taskplane.contract.state import RunState, RunStatus, TaskState, TaskStatus
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.hints import OrchestratorHints
from taskplane.processors.orchestrator.spare import SpareSlots
from tests.processors._decider_helpers import TOOLS, document_pipeline

RUNS = st.sampled_from(["run-a", "run-b"])
TASKS = st.sampled_from(list(TOOLS))
WORKERS = st.sampled_from(["w1", "w2", "w3"])
OFFSETS = st.sampled_from([0, 0, 0, 0, -1, 1])  # mostly current epoch/attempt, sometimes stale
FOLLOW_ON = st.sampled_from([0, 0, 1, 2])  # slots a completing worker offers for downstream grants
STEPS = st.sampled_from([1, 500, 2_000, 5_000, 10_000, 70_000])
ENDED = {TaskStatus.DEAD_LETTERED, TaskStatus.BLOCKED}


class OrchestratorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # With spare slots: completions that offer follow-on slots get later runs' roots too.
        decider = OrchestratorDecider()
        self.runner: InMemoryRunner[RunState, Command, Event] = InMemoryRunner.of(
            decider, hints=lambda: OrchestratorHints(decider.plans, SpareSlots()))
        # Re-decides every command from the state before it with the input its events
        # recorded (what ``taskplane verify`` does): it must decide the same.
        self.replayer = OrchestratorDecider(decider.plans)
        # Decides nothing, so it folds every event itself: the states deciding folded
        # and the runner kept must be the ones the log alone gives.
        self.refold = OrchestratorDecider(decider.plans)
        self.plan: SystemPlan = document_pipeline()
        self.now = 1_000
        self.checked = 0  # log entries already checked
        self.live: dict[tuple[str, str], int] = {}  # (run, task) -> epoch of the live lease
        self.succeeded_keys: set[tuple[str, str]] = set()

    @initialize(max_retries=st.integers(0, 3), dead_letter=st.booleans(), tracking=st.booleans())
    def policy(self, max_retries: int, dead_letter: bool, tracking: bool) -> None:
        self.plan = document_pipeline(ExecutionPolicy(
            lease_timeout_ms=10_000, max_retries=max_retries, initial_backoff_ms=1_000, max_backoff_ms=8_000,
            dead_letter_transition=dead_letter, idempotency_tracking=tracking))

    # ------------------------------------------------------------ helpers

    def state(self, run: str) -> RunState | None:
        return self.runner.states.get(run)

    def task(self, run: str, name: str) -> TaskState:
        state = self.state(run)
        return state.tasks[name] if state is not None else TaskState(name)

    def send(self, run: str, command: Command) -> list[Event]:
        before = self.state(run)
        events = self.runner.handle(run, command, self.now)
        given = Given(self.replayer.recorded(command, events))
        assert step(self.replayer, before, command, self.now, given).events == events
        self.check_log()
        folded: RunState | None = None
        for logged, event in self.runner.log:
            if logged == run:
                folded = self.refold.evolve(folded, event)
        assert folded == self.state(run)
        return events

    def fenced(self, run: str, name: str, worker: str, epoch: int, command: Command) -> None:
        """Send a holder-only command; from anyone but the current holder it changes nothing."""
        before = self.task(run, name)
        events = self.send(run, command)
        is_holder = before.status is TaskStatus.LEASED and before.holder == worker and before.epoch == epoch
        if not is_holder:
            assert all(isinstance(e, CommandRejected) for e in events), events
            assert self.task(run, name) == before

    def check_log(self) -> None:
        # step() turns a decider crash into a rejection (the runtime must keep going);
        # here a crash is a bug to surface, not a rejection to accept.
        assert not self.runner.failures, self.runner.failures
        tracking = self.plan.execution.idempotency_tracking
        for run, event in self.runner.log[self.checked:]:
            match event:
                case LeaseGranted(task=name, epoch=epoch):
                    assert (run, name) not in self.live, f"two live leases on {run}/{name}"
                    self.live[(run, name)] = epoch
                case TaskSucceeded(task=name, epoch=epoch):
                    assert self.live.pop((run, name)) == epoch
                case LeaseExpired(task=name, epoch=epoch) | LeaseReleased(task=name, epoch=epoch):
                    assert self.live.pop((run, name)) == epoch
                case AttemptFailed(task=name, epoch=epoch):
                    assert self.live.pop((run, name), epoch) == epoch
                case RunFailed() | RunCancelled():
                    self.live = {k: v for k, v in self.live.items() if k[0] != run}
                case ToolCallSucceeded(key=key):
                    if tracking:
                        assert (run, key) not in self.succeeded_keys, f"{key} recorded twice"
                    self.succeeded_keys.add((run, key))
                case _:
                    pass
        self.checked = len(self.runner.log)

    # ------------------------------------------------------------ rules

    @rule(run=RUNS)
    def submit(self, run: str) -> None:
        existed = self.state(run) is not None
        events = self.send(run, SubmitRun(run, self.plan, "{}"))
        assert isinstance(events[0], CommandRejected) == existed
        if any(isinstance(e, LeaseGranted) for e in events):
            note("root granted at submit")

    @rule(run=RUNS, name=TASKS, worker=WORKERS, offset=OFFSETS)
    def claim(self, run: str, name: str, worker: str, offset: int) -> None:
        before = self.task(run, name)
        events = self.send(run, ClaimTask(run, name, before.attempt + offset, worker))
        if offset != 0 or before.status is not TaskStatus.READY:
            assert all(isinstance(e, CommandRejected) for e in events)

    @rule(run=RUNS, name=TASKS, worker=WORKERS, holder=st.booleans(), offset=OFFSETS)
    def renew(self, run: str, name: str, worker: str, holder: bool, offset: int) -> None:
        task = self.task(run, name)
        worker = task.holder or worker if holder else worker
        self.fenced(run, name, worker, task.epoch + offset, RenewLease(run, name, worker, task.epoch + offset))

    @rule(run=RUNS, name=TASKS, worker=WORKERS, holder=st.booleans(), offset=OFFSETS)
    def release(self, run: str, name: str, worker: str, holder: bool, offset: int) -> None:
        task = self.task(run, name)
        worker = task.holder or worker if holder else worker
        self.fenced(run, name, worker, task.epoch + offset, ReleaseLease(run, name, worker, task.epoch + offset))

    @rule(run=RUNS, name=TASKS, worker=WORKERS, holder=st.booleans(), offset=OFFSETS, index=st.integers(0, 2),
          ok=st.booleans())
    def record_tool_call(self, run: str, name: str, worker: str, holder: bool, offset: int, index: int,
                         ok: bool) -> None:
        task = self.task(run, name)
        worker = task.holder or worker if holder else worker
        key = f"{name}/{index}"
        duplicate = ok and (run, key) in self.succeeded_keys and self.plan.execution.idempotency_tracking
        events = self.send(run, RecordToolCall(run, name, worker, task.epoch + offset, key, TOOLS[name], index,
                                               ok, "r" if ok else None, None if ok else "e"))
        if duplicate:
            [event] = events
            assert isinstance(event, CommandRejected)
        assert all(isinstance(e, CommandRejected | ToolCallSucceeded | ToolCallFailed) for e in events)
        after = self.task(run, name)  # a record never moves the task, whatever its epoch
        assert (after.status, after.epoch, after.holder) == (task.status, task.epoch, task.holder)

    @rule(run=RUNS, name=TASKS, worker=WORKERS, holder=st.booleans(), offset=OFFSETS, follow_on=FOLLOW_ON)
    def complete(self, run: str, name: str, worker: str, holder: bool, offset: int, follow_on: int) -> None:
        task = self.task(run, name)
        worker = task.holder or worker if holder else worker
        self.fenced(run, name, worker, task.epoch + offset,
                    CompleteTask(run, name, worker, task.epoch + offset, f'"{name}"', follow_on))

    @rule(run=RUNS, name=TASKS, worker=WORKERS, holder=st.booleans(), offset=OFFSETS,
          kind=st.sampled_from(FailureKind), retry_after=st.sampled_from([0, 3_000, 30_000]))
    def fail(self, run: str, name: str, worker: str, holder: bool, offset: int, kind: FailureKind,
             retry_after: int) -> None:
        task = self.task(run, name)
        worker = task.holder or worker if holder else worker
        self.fenced(run, name, worker, task.epoch + offset,
                    FailTask(run, name, worker, task.epoch + offset, "boom", kind, retry_after))

    @rule(run=RUNS, name=TASKS)
    def replay(self, run: str, name: str) -> None:
        before = self.task(run, name)
        events = self.send(run, ReplayTask(run, name))
        if before.status is not TaskStatus.DEAD_LETTERED:
            assert all(isinstance(e, CommandRejected) for e in events)

    # Targeted rules: random commands rarely hit the one task that can move, so these
    # pick it, which takes runs to success, dead letters, replays and failed runs.

    def pick(self, run: str, status: TaskStatus, index: int) -> TaskState | None:
        state = self.state(run)
        if state is None or state.status is not RunStatus.RUNNING:
            return None
        found = [t for t in state.tasks.values() if t.status is status]
        return found[index % len(found)] if found else None

    @rule(run=RUNS, worker=WORKERS, index=st.integers(0, 3))
    def claim_a_ready_task(self, run: str, worker: str, index: int) -> None:
        task = self.pick(run, TaskStatus.READY, index)
        if task is not None:
            assert isinstance(self.send(run, ClaimTask(run, task.name, task.attempt, worker))[0], LeaseGranted)

    @rule(run=RUNS, index=st.integers(0, 3), calls=st.integers(0, 2), follow_on=FOLLOW_ON)
    def finish_a_leased_task(self, run: str, index: int, calls: int, follow_on: int = 0) -> None:
        task = self.pick(run, TaskStatus.LEASED, index)
        if task is None or task.holder is None:
            return
        for call in range(calls):
            self.send(run, RecordToolCall(run, task.name, task.holder, task.epoch, f"{task.name}/{call}",
                                          TOOLS[task.name], call, True, "r"))
        events = self.send(run, CompleteTask(run, task.name, task.holder, task.epoch, '"done"', follow_on))
        assert isinstance(events[0], TaskSucceeded)
        granted = [e for e in events if isinstance(e, LeaseGranted)]  # follow-on grants go to the completer
        assert len(granted) <= follow_on and all(g.worker_id == task.holder for g in granted)

    @rule(run=RUNS, worker=WORKERS, index=st.integers(0, 3), follow_on=FOLLOW_ON)
    def run_a_ready_task(self, run: str, worker: str, index: int, follow_on: int) -> None:
        self.claim_a_ready_task(run, worker, index)
        self.finish_a_leased_task(run, index, 2, follow_on)

    @rule(run=RUNS, index=st.integers(0, 3), kind=st.sampled_from(FailureKind))
    def fail_a_leased_task(self, run: str, index: int, kind: FailureKind) -> None:
        task = self.pick(run, TaskStatus.LEASED, index)
        if task is not None and task.holder is not None:
            events = self.send(run, FailTask(run, task.name, task.holder, task.epoch, "boom", kind))
            assert isinstance(events[0], AttemptFailed)

    @rule(run=RUNS, index=st.integers(0, 3))
    def replay_a_dead_letter(self, run: str, index: int) -> None:
        task = self.pick(run, TaskStatus.DEAD_LETTERED, index)
        if task is not None:
            assert [type(e) for e in self.send(run, ReplayTask(run, task.name))] == [TaskReplayed, TaskReady]

    @rule(run=RUNS, dice=st.integers(0, 29))
    def cancel(self, run: str, dice: int) -> None:
        if dice == 0:  # rare, or every run would end early
            self.send(run, CancelRun(run, "test"))

    @rule(step=STEPS)
    def advance(self, step: int) -> None:
        self.now += step
        self.runner.advance(self.now)
        self.check_log()

    def teardown(self) -> None:
        for state in self.runs():  # shown by --hypothesis-show-statistics: are the paths reached?
            note(f"run {state.status.value}")
            for task in state.tasks.values():
                if task.status in ENDED:
                    note(f"task {task.status.value}")
        for _, logged in self.runner.log:
            if type(logged).__name__ in ("TaskReplayed", "LeaseExpired", "TaskDeadLettered", "RunFailed"):
                note(f"saw {type(logged).__name__}")

    # ------------------------------------------------------------ invariants

    def runs(self) -> list[RunState]:
        return [s for s in self.runner.states.values() if s is not None]

    @invariant()
    def at_most_one_holder_and_no_orphan_holders(self) -> None:
        for state in self.runs():
            for task in state.tasks.values():
                if task.status is TaskStatus.LEASED:
                    assert task.holder is not None and task.lease_expires_ms is not None
                    assert self.live[(state.run_id, task.name)] == task.epoch
                else:
                    assert task.holder is None and (state.run_id, task.name) not in self.live

    @invariant()
    def nothing_runs_before_its_dependencies_succeeded(self) -> None:
        for state in self.runs():
            for agent in state.plan.agents:
                status = state.tasks[agent.name].status
                if status in (TaskStatus.READY, TaskStatus.LEASED, TaskStatus.SUCCEEDED):
                    assert all(state.tasks[d].status is TaskStatus.SUCCEEDED for d in agent.dependencies)

    @invariant()
    def no_run_is_stuck(self) -> None:
        decider = self.runner.decider
        for state in self.runs():
            if state.status is not RunStatus.RUNNING or decider.next_deadline(state) is not None:
                continue
            statuses = [t.status for t in state.tasks.values()]
            if any(s in (TaskStatus.READY, TaskStatus.LEASED) for s in statuses):
                continue
            remaining = {s for s in statuses if s is not TaskStatus.SUCCEEDED}
            assert remaining and remaining <= ENDED, f"{state.run_id} stuck: {statuses}"

    @invariant()
    def state_is_the_fold_of_the_log(self) -> None:
        decider = self.runner.decider
        for key, live in self.runner.states.items():
            folded: RunState | None = None
            for event_key, event in self.runner.log:
                if event_key == key:
                    folded = decider.evolve(folded, event)
            assert folded == live


OrchestratorMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=100, deadline=None)
TestOrchestratorMachine = OrchestratorMachine.TestCase
