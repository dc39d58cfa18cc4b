"""Simulated workers: a consumer group's share of ``work``, claims, and granted attempts
run by the worker's own ``Attempt`` (journal, breaker check, tool retries, the outcome
command) with the user's real agent and tool code, in process and in virtual time.

An attempt runs to its end when it is granted, on its own virtual clock: each tool call
takes a seeded duration; what it sends leaves at the time it was sent, and only if the
worker is still alive then. A crash cuts the attempt where the fault says (the tool's
side effect may already have happened: that is the case the journal and idempotency keys
exist for); the worker comes back under a new id, and what it consumed but had not
claimed is delivered again. Renewals go out every leaseTimeout/3 while the attempt runs,
none while the worker stalls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from taskplane.contract.messages import (
    Assignment,
    ClaimTask,
    CompleteTask,
    FailTask,
    RenewLease,
    WorkItem,
)
from taskplane.contract.plan import AgentPlan, Isolation, SystemPlan
from taskplane.testing.simulation.faults import unit
from taskplane.testing.simulation.result import ToolExecution
from taskplane.testing.simulation.world import HOP_MS, World
from taskplane.workers.attempt import Attempt, Host
from taskplane.workers.exceptions import ToolError, ToolTimeout
from taskplane.workers.isolation import Limits, run_inline
from taskplane.workers.sdk import Registry, ToolSpec
from taskplane.workers.settings import WorkerSettings

RESTART_MS = 3_000  # a crashed worker's process manager starts it again
REBALANCE_MS = 3_000  # a dead member's `work` partitions move (the session timeout)


class SimCrash(BaseException):  # noqa: N818 - not an error: the process is gone
    """The worker's process dies here: nothing after this point of the attempt happens."""


class _Inline(concurrent.futures.Executor):
    """Runs what an async agent hands off at once, on this thread: deterministic."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - a SimCrash travels in the future
            future.set_exception(error)
        return future


class Pool:
    """The workers of one system and what they share: the registry, settings, the loop
    async agents run on."""

    def __init__(self, world: World, registry: Registry, plan: SystemPlan, workers: int, concurrency: int) -> None:
        self.world = world
        self.registry = registry
        self.plan = plan
        self.settings = WorkerSettings(concurrency=concurrency, worker_id="sim")
        self.stopping = threading.Event()  # never set: a simulated worker is killed, not stopped
        self._agents = {agent.name: agent for agent in plan.agents}
        self.workers = [SimWorker(self, index) for index in range(workers)]
        self._loop: asyncio.AbstractEventLoop | None = None
        world.offer = self.offer
        world.assign = self.assign

    def agent(self, name: str) -> AgentPlan:
        return self._agents[name]

    def event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._loop.set_default_executor(_Inline())
        return self._loop

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()

    def offer(self, item: WorkItem, decided_ms: int) -> None:
        """A ``work`` record: the partition's owner takes it (another member while the
        owner is down); a duplicate delivery goes to a second member too."""
        world = self.world
        coordinate = world.coordinate(item.run_id, "offer", item.task)
        targets = [self._owner(f"{item.run_id}/{item.task}", 0)]
        if world.faults.fires("duplicate", coordinate, world.loop.now) and len(self.workers) > 1:
            targets.append(self._owner(f"{item.run_id}/{item.task}", 1))
        for worker in targets:
            worker.queue.append(item)
            worker.pump()

    def _owner(self, key: str, shift: int) -> SimWorker:
        live = [w for w in self.workers if w.alive] or self.workers
        return live[(int(unit(0, key) * 1_000_003) + shift) % len(live)]

    def assign(self, assignment: Assignment) -> None:
        for worker in self.workers:
            if worker.worker_id == assignment.worker_id:
                worker.assigned(assignment)
                return  # an id of a dead incarnation: the grant is lost, the lease expires


class SimWorker:
    def __init__(self, pool: Pool, index: int) -> None:
        self.pool = pool
        self.world = pool.world
        self.index = index
        self.incarnation = 0
        self.worker_id = f"w{index}"
        self.alive = True
        faults = self.world.faults
        self.skew_ms = round(faults.draw("skew", f"w{index}", -1_500, 1_500)) \
            if faults.fires("skew", f"w{index}") else 0
        self.used = 0
        self.claims: dict[tuple[str, str, int], WorkItem] = {}
        self.queue: deque[WorkItem] = deque()

    # ------------------------------------------------------------ intake

    def pump(self) -> None:
        """Claim queued items while a slot and a claim permit are free (as the worker
        polls only then)."""
        limit = self.pool.settings.concurrency
        while self.alive and self.queue and self.used < limit and len(self.claims) < limit:
            item = self.queue.popleft()
            self.claims[(item.run_id, item.task, item.attempt)] = item
            self.send(self.world.loop.now, ClaimTask(item.run_id, item.task, item.attempt, self.worker_id))

    def assigned(self, assignment: Assignment) -> None:
        if not self.alive:
            return
        claim = (assignment.run_id, assignment.task, assignment.attempt)
        if self.claims.pop(claim, None) is None and not assignment.granted:
            # A refusal carries no attempt: matched on (run, task), as the worker's inbox does.
            waiting = next((k for k in self.claims if k[:2] == claim[:2]), None)
            if waiting is not None:
                del self.claims[waiting]
        if assignment.granted:
            self.used += 1
            _SimAttempt(self, assignment).run()
        self.pump()

    # ------------------------------------------------------------ the log

    def send(self, at_ms: int, command: Any) -> None:
        """``command`` leaves at ``at_ms`` if this incarnation is alive then, stamped with
        its clock; a duplicate delivery fault sends it twice."""
        self.world.loop.at(at_ms, self._sent, self.incarnation, command)

    def _sent(self, incarnation: int, command: Any) -> None:
        if incarnation != self.incarnation or not self.alive:
            return
        world = self.world
        now = world.loop.now
        stamped = now + self.skew_ms
        key = command.run_id
        world.broker.deliver(now, world.orchestrator.command, key, command, stamped)
        if "duplicate" in world.faults.rates and world.faults.fires(
                "duplicate", world.coordinate(key, type(command).__name__, getattr(command, "task", None)), now):
            world.broker.deliver(now, world.orchestrator.command, key, command, stamped, hop_ms=HOP_MS + 7)

    def ended(self, incarnation: int) -> None:
        if incarnation == self.incarnation and self.alive:
            self.used -= 1
            self.pump()

    # ------------------------------------------------------------ crash

    def crash(self, incarnation: int) -> None:
        if incarnation != self.incarnation or not self.alive:
            return
        self.alive = False
        self.incarnation += 1
        self.used = 0
        # consumed but not answered: uncommitted, so the group delivers them again
        leftover = [*self.queue, *self.claims.values()]
        self.queue.clear()
        self.claims.clear()
        loop = self.world.loop
        for item in leftover:
            loop.at(loop.now + REBALANCE_MS, self.pool.offer, item, loop.now)
        loop.at(loop.now + RESTART_MS, self._restart)

    def _restart(self) -> None:
        self.alive = True
        self.worker_id = f"w{self.index}.{self.incarnation}"  # a new process, a new id
        self.pump()


class _SimAttempt:
    """One granted attempt on a simulated worker: the real ``Attempt`` with a virtual
    host (clock, in-process tool runner, virtual sleep) and a sender onto the log."""

    def __init__(self, worker: SimWorker, assignment: Assignment) -> None:
        self.worker = worker
        self.world = worker.world
        self.assignment = assignment
        self.incarnation = worker.incarnation
        self.start = self.world.loop.now
        self.local = self.start  # this attempt's virtual time
        self.pauses: list[tuple[int, int]] = []
        self.runs = 0
        run_index = self.world.run_index.get(assignment.run_id, -1)
        self.where = f"{run_index}/{assignment.task}/{assignment.attempt}"

    def run(self) -> None:
        pool = self.worker.pool
        a = self.assignment
        host = Host(self._now, self._tool, self._sleep)
        attempt = Attempt(a, _agent(pool, a), pool.registry, pool.settings, self._send, self.world.breakers.get,
                          pool.stopping, frozenset(), self._follow_on, None, host)
        crashed = False
        try:
            if pool.registry.agent(a.task).is_async:
                pool.event_loop().run_until_complete(attempt.run_async(self._send_async))
            else:
                attempt.run()
        except SimCrash:
            crashed = True
        self._renewals()
        loop = self.world.loop
        if crashed:
            loop.at(self.local, self.worker.crash, self.incarnation)
        else:
            loop.at(self.local, self.worker.ended, self.incarnation)

    def _now(self) -> int:
        return self.local + self.worker.skew_ms

    def _sleep(self, seconds: float) -> None:
        self.local += round(seconds * 1000)

    def _follow_on(self) -> int:
        worker = self.worker
        if not worker.pool.settings.follow_on_grants:
            return 0
        return max(worker.pool.settings.concurrency - worker.used, 0) + 1

    def _send(self, command: Any) -> None:
        if isinstance(command, (CompleteTask, FailTask)) and self._fires("crash", "outcome"):
            raise SimCrash
        self.local += 1
        self.worker.send(self.local, command)

    async def _send_async(self, command: Any) -> None:
        self._send(command)

    def _fires(self, name: str, site: str) -> bool:
        return self.world.faults.fires(name, f"{self.where}@{site}", self.local)

    def _tool(self, spec: ToolSpec, args: dict[str, Any], key: str, isolation: Isolation, limits: Limits) -> Any:
        """One execution of a tool, as ``isolation.run_tool`` would run it, in virtual time."""
        n = self.runs
        self.runs += 1
        faults = self.world.faults
        if self._fires("crash", f"before:{n}"):
            raise SimCrash
        if self._fires("slow", f"before:{n}"):
            lease = self.assignment.lease_timeout_ms
            pause = round(faults.draw("slow", f"{self.where}@before:{n}", 1.2, 2.5) * lease)
            self.pauses.append((self.local, self.local + pause))
            self.local += pause
        self.local += 5 + round(unit(faults.seed, f"{self.where}:{n}") * 120)
        if self._fires("tool-timeout", f"call:{n}"):
            self.local += limits.timeout_ms
            if unit(faults.seed, f"{self.where}:{n}:effect") < 0.5:
                self._execute(spec, args, key)
            raise ToolTimeout(spec.name, f"no answer after {limits.timeout_ms} ms (simulated)")
        if self._fires("tool-error", f"call:{n}"):
            raise ToolError(spec.name, "simulated failure of the dependency")
        result = self._execute(spec, args, key)
        if self._fires("crash", f"after:{n}"):
            raise SimCrash  # the side effect happened; its record is never written
        return result

    def _execute(self, spec: ToolSpec, args: dict[str, Any], key: str) -> Any:
        a = self.assignment
        self.world.executions.append(ToolExecution(a.run_id, a.task, a.epoch, spec.name, key, self.local))
        return run_inline(spec, args, key)

    def _renewals(self) -> None:
        """RenewLease every leaseTimeout/3 from the grant until the attempt ended; a stalled
        worker sends none, then the one due at once when it resumes."""
        a = self.assignment
        interval = max(a.lease_timeout_ms, 30) // 3
        due = self.start + interval
        while due < self.local:
            stalled = next((end for start, end in self.pauses if start <= due < end), None)
            sent = due if stalled is None else stalled
            if sent >= self.local:
                break
            self.worker.send(sent, RenewLease(a.run_id, a.task, a.worker_id, a.epoch))
            due = max(due + interval, sent)
            if stalled is not None:
                due = sent + interval


def _agent(pool: Pool, assignment: Assignment) -> AgentPlan:
    """The task's agent with the run's own tool policy, as ``Worker._agent`` builds it."""
    latest = pool.agent(assignment.task)
    if not assignment.tools:
        return latest
    return AgentPlan(latest.name, assignment.model, assignment.tools, latest.dependencies)

