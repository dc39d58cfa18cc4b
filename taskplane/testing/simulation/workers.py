"""Simulated workers: a consumer group's share of ``work``, claims, and granted attempts
run by the worker's own ``Attempt`` (journal, breaker check, tool retries, the outcome
command) with the user's real agent and tool code, in process and in virtual time.

An attempt runs in a greenlet in virtual time: each tool call takes a seeded duration,
during which everything else goes on; what it sends leaves then, and only if the worker
is still alive. A crash cuts the attempt where the fault says (the tool's side effect
may already have happened: that is the case the journal and idempotency keys exist
for) and ends the worker's other attempts where they wait; the worker comes back under
a new id, and what it consumed but had not claimed is delivered again. Renewals go out
every leaseTimeout/3 while the attempt runs, none while the worker stalls.
"""

from __future__ import annotations

import asyncio
import asyncio.events as asyncio_events
import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import greenlet

from taskplane.contract.governance import STOPPED_NOTICE
from taskplane.contract.messages import (
    Assignment,
    ClaimTask,
    CompleteTask,
    FailTask,
    RenewLease,
    WorkItem,
)
from taskplane.contract.plan import Isolation, SystemPlan, ToolPlan
from taskplane.testing.simulation.faults import unit
from taskplane.testing.simulation.result import ToolExecution
from taskplane.testing.simulation.world import World
from taskplane.workers.attempt import Attempt, Host, granted_agent
from taskplane.workers.exceptions import ToolError, ToolTimeout
from taskplane.workers.isolation import Limits, run_inline
from taskplane.workers.permits import answered, outlived, permit_request
from taskplane.workers.sdk import Registry, ToolSpec
from taskplane.workers.settings import WorkerSettings
from taskplane.workers.speculation import Speculation

PERMIT_POLL_MS = 20  # how often (virtual time) a call waiting for a permit looks for its answer
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
    """The workers of one system and what they share: the registry and the settings."""

    def __init__(self, world: World, registry: Registry, plan: SystemPlan, workers: int, concurrency: int) -> None:
        self.world = world
        self.registry = registry
        self.plan = plan
        self.settings = WorkerSettings(concurrency=concurrency, worker_id="sim")
        self.stopping = threading.Event()  # never set: a simulated worker is killed, not stopped
        self.workers = [SimWorker(self, index) for index in range(workers)]
        world.offer = self.offer
        world.assign = self.assign

    @property
    def started_ahead(self) -> int:
        """Children started before their grant, over every incarnation of every worker."""
        return sum(worker.started_ahead for worker in self.workers)

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
        self.started_ahead = 0
        self.claims: dict[tuple[str, str, int], WorkItem] = {}
        self.queue: deque[WorkItem] = deque()
        self.stopped_runs: set[str] = set()  # told by the orchestrator (a budget): attempts stop
        self.speculation = self._speculation()

    def _speculation(self) -> Speculation | None:
        settings = self.pool.settings
        if not (settings.follow_on_grants and settings.speculate):
            return None
        return Speculation(self.pool.plan, now_ms=lambda: self.world.loop.now + self.skew_ms)

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
        if not assignment.granted and (assignment.reason or "").startswith(STOPPED_NOTICE):
            self.stopped_runs.add(assignment.run_id)  # as the worker's inbox does (workers/worker.py)
        if self.claims.pop(claim, None) is None and not assignment.granted:
            # A refusal carries no attempt: matched on (run, task), as the worker's inbox does.
            waiting = next((k for k in self.claims if k[:2] == claim[:2]), None)
            if waiting is not None:
                del self.claims[waiting]
        if assignment.granted and not (self.speculation is not None and self.speculation.granted(assignment)):
            self.used += 1
            _SimAttempt(self, assignment).run()
        self.pump()

    def start_ahead(self, incarnation: int, children: list[Assignment]) -> None:
        """Children a completion's follow-on grants decided (workers/speculation.py),
        started as the worker does: at once, before their grant arrives."""
        if incarnation != self.incarnation or not self.alive:
            return
        for child in children:
            self.used += 1
            self.started_ahead += 1
            _SimAttempt(self, child).run()

    # ------------------------------------------------------------ the log

    def send(self, at_ms: int, command: Any) -> None:
        """``command`` leaves at ``at_ms`` if this incarnation is alive then, stamped with
        its clock; a duplicate delivery fault sends it twice. Sent now, it is out: the
        worker confirms a tool's record before the next tool runs, so a crash that follows
        does not take it back."""
        if at_ms <= self.world.loop.now:
            self._sent(self.incarnation, command)
        else:
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
            world.broker.redeliver(now, world.orchestrator.command, key, command, stamped)

    def ended(self, incarnation: int) -> None:
        if incarnation == self.incarnation and self.alive:
            self.used -= 1
            self.pump()

    # ------------------------------------------------------------ crash

    def crash(self, incarnation: int) -> None:
        if incarnation != self.incarnation or not self.alive:
            return
        self.alive = False
        self.world.crashes[self.worker_id] = self.world.loop.now
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
        self.speculation = self._speculation()  # a new process knows nothing it ran before
        self.worker_id = f"w{self.index}.{self.incarnation}"  # a new process, a new id
        self.pump()


class _SimAttempt:
    """One granted attempt on a simulated worker: the real ``Attempt`` with a virtual
    host (clock, in-process tool runner, virtual sleep) and a sender onto the log.

    It runs in a greenlet of its own: a tool call's duration, a stall or a retry's sleep
    switches back to the loop until that virtual time, so other attempts, the deciders and
    the clock go on meanwhile. A worker that dies ends its attempts where they wait: no
    side effect of theirs happens after the crash."""

    def __init__(self, worker: SimWorker, assignment: Assignment) -> None:
        self.worker = worker
        self.world = worker.world
        self.loop = worker.world.loop
        self.assignment = assignment
        self.incarnation = worker.incarnation
        self.start = self.loop.now
        self.stalled_until = 0
        self.done = False
        self.runs = 0
        run_index = self.world.run_index.get(assignment.run_id, -1)
        self.where = f"{run_index}/{assignment.task}/{assignment.attempt}"
        self._glet: greenlet.greenlet | None = None
        self._asyncio: Any = None  # an async agent's running event loop, while it waits

    def run(self) -> None:
        self._glet = greenlet.greenlet(self._body)
        interval = max(self.assignment.lease_timeout_ms, 30) // 3
        self.loop.at(self.start + interval, self._renew, interval)
        self._glet.switch()

    def _body(self) -> None:
        pool = self.worker.pool
        a = self.assignment
        host = Host(self._now, self._tool, self._sleep)
        attempt = Attempt(a, granted_agent(pool.plan, a), pool.registry, pool.settings, self._send, self.world.breakers.get,
                          pool.stopping, frozenset(), self._follow_on, None, host=host,
                          run_stopped=self.worker.stopped_runs.__contains__, permits=self)
        crashed = False
        try:
            if pool.registry.agent(a.task).is_async:
                events = asyncio.new_event_loop()
                events.set_default_executor(_Inline())
                try:
                    events.run_until_complete(attempt.run_async(self._send_async))
                finally:
                    events.close()
            else:
                attempt.run()
        except SimCrash:
            crashed = True
        self.done = True
        if crashed:
            self.worker.crash(self.incarnation)
        else:
            self.worker.ended(self.incarnation)

    # ------------------------------------------------------------ virtual time

    def _wait(self, until: int) -> None:
        """Let virtual time pass to ``until``: back to the loop, resumed then (or ended
        there, if the worker died meanwhile)."""
        if until <= self.loop.now:
            return
        assert self._glet is not None
        self.loop.at(until, self._resume)
        # asyncio keeps the running loop per thread: another attempt's loop runs meanwhile
        self._asyncio = asyncio_events._get_running_loop()
        asyncio_events._set_running_loop(None)
        parent = self._glet.parent
        assert parent is not None
        parent.switch()
        asyncio_events._set_running_loop(self._asyncio)
        if self.incarnation != self.worker.incarnation:
            raise SimCrash  # the process is gone: nothing after this point happens

    def _resume(self) -> None:
        if self._glet is not None and not self._glet.dead:
            self._glet.switch()

    def _renew(self, interval: int) -> None:
        """RenewLease every leaseTimeout/3 while the attempt runs; a stalled worker sends
        none until it resumes, then the one due at once."""
        if self.done or self.incarnation != self.worker.incarnation:
            return
        now = self.loop.now
        if now < self.stalled_until:
            self.loop.at(self.stalled_until, self._renew, interval)
            return
        a = self.assignment
        self.worker.send(now, RenewLease(a.run_id, a.task, a.worker_id, a.epoch))
        self.loop.at(now + interval, self._renew, interval)

    def _now(self) -> int:
        return self.loop.now + self.worker.skew_ms

    def _sleep(self, seconds: float) -> None:
        self._wait(self.loop.now + round(seconds * 1000))

    def acquire(self, assignment: Assignment, plan: ToolPlan, key: str, try_no: int,
                stopping: threading.Event) -> None:
        """A limited call asks the simulated governor (the real breaker decider) and waits
        in virtual time for its answer, its lease renewed meanwhile; a crash ends it there."""
        world, a = self.world, assignment
        slot = (key, try_no, a.worker_id, a.epoch)
        world.permit_answers.pop(slot, None)
        while True:  # asked again when the grant came too late to call under it (workers/permits.py)
            now = self.loop.now
            world.broker.deliver(now, world.breaker.command, plan.name, permit_request(a, plan, key, try_no), now)
            while slot not in world.permit_answers:
                self._wait(self.loop.now + PERMIT_POLL_MS)
            answer = world.permit_answers.pop(slot)
            if not outlived(answer, plan.timeout_ms, self._now()):
                break
        answered(answer, plan.name)

    def _follow_on(self) -> int:
        worker = self.worker
        if not worker.pool.settings.follow_on_grants:
            return 0
        return max(worker.pool.settings.concurrency - worker.used, 0) + 1

    def _send(self, command: Any) -> None:
        if isinstance(command, (CompleteTask, FailTask)) and self.world.faults.fires(
                "crash", f"{self.where}@outcome", self.loop.now):
            raise SimCrash
        worker = self.worker
        if worker.speculation is None or not isinstance(command, CompleteTask):
            worker.send(self.loop.now, command)
            return
        _, children = worker.speculation.report(command, self.assignment,
                                                lambda c: worker.send(self.loop.now, c))
        if children:  # from the loop, not from this attempt's greenlet
            self.loop.at(self.loop.now, worker.start_ahead, self.incarnation, children)

    async def _send_async(self, command: Any) -> None:
        self._send(command)

    def _tool(self, spec: ToolSpec, args: dict[str, Any], key: str, isolation: Isolation, limits: Limits) -> Any:
        """One execution of a tool, as ``isolation.run_tool`` would run it, in virtual time."""
        n = self.runs
        self.runs += 1
        faults = self.world.faults
        where = self.where
        site = f"{where}:{n}"
        picked = faults.one_of(site, (("crash", f"crash:{where}@before:{n}"), ("slow", f"slow:{where}@before:{n}"),
                                      ("tool-timeout", f"tool-timeout:{where}@call:{n}"),
                                      ("tool-error", f"tool-error:{where}@call:{n}"),
                                      ("crash", f"crash:{where}@after:{n}")))
        fault = picked[0] if picked is not None else ""
        if fault.startswith("crash:") and fault.endswith(f"@before:{n}"):
            faults.note(fault, self.loop.now)
            raise SimCrash
        if fault.startswith("slow:"):
            faults.note(fault, self.loop.now)
            pause = round(faults.draw("slow", fault, 1.2, 2.5) * self.assignment.lease_timeout_ms)
            self.stalled_until = self.loop.now + pause
            self._wait(self.stalled_until)
        took = 5 + round(unit(faults.seed, f"{site}:took") * 120)
        if fault.startswith("tool-timeout:"):
            faults.note(fault, self.loop.now)
            if unit(faults.seed, f"{site}:effect") < 0.5:
                self._wait(self.loop.now + took)
                self._execute(spec, args, key)
            self._wait(self.loop.now + limits.timeout_ms)
            raise ToolTimeout(spec.name, f"no answer after {limits.timeout_ms} ms (simulated)")
        self._wait(self.loop.now + took)
        if fault.startswith("tool-error:"):
            faults.note(fault, self.loop.now)
            raise ToolError(spec.name, "simulated failure of the dependency")
        result = self._execute(spec, args, key)
        if fault.startswith("crash:"):
            faults.note(fault, self.loop.now)
            raise SimCrash  # the side effect happened; its record is never written
        return result

    def _execute(self, spec: ToolSpec, args: dict[str, Any], key: str) -> Any:
        a = self.assignment
        self.world.executions.append(ToolExecution(a.run_id, a.task, a.epoch, spec.name, key, self.loop.now,
                                                   a.worker_id))
        return run_inline(spec, args, key)
