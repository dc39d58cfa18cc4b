"""The worker loop for one AgentSystem.

poll ``work`` (group ``<prefix>.workers.<system>``) → ClaimTask → wait for the
Assignment on this worker's inbox → commit the work offset (the claim is answered) →
run the attempt with a lease renewer → CompleteTask / FailTask / ReleaseLease.
A CompleteTask says how many slots are free (``follow_on``): the orchestrator grants
downstream tasks it readies straight to this worker, and what is left of the offer to
new runs' root tasks for a moment after (docs/orchestrator.md, "Root grants"); the
worker runs those grants on arrival, with no claim round trip.

    worker = Worker(kafka_config, Topics("taskplane"), "document-pipeline", registry)
    worker.run()          # until worker.stop() (or SIGTERM with install_signal_handlers)
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from taskplane.contract.breaker import BreakerState
from taskplane.contract.governance import STOPPED_NOTICE, USAGE_NOTICE
from taskplane.contract.messages import Assignment, ClaimTask, CompleteTask, ReleaseLease, WorkItem
from taskplane.contract.plan import (
    AgentPlan,
    Isolation,
    SystemDefinition,
    SystemPlan,
)
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import SerdeError, StreamsError
from taskplane.streams.poison import decoded_input
from taskplane.streams.serde import Serde
from taskplane.streams.table import GlobalTable
from taskplane.streams.topics import Topics
from taskplane.workers._agent_loop import AgentLoop
from taskplane.workers._kafka import CommandSender, Delivery, Inbox, OffsetTracker
from taskplane.workers._slots import Slots
from taskplane.workers.attempt import Attempt, granted_agent
from taskplane.workers.exceptions import IsolationUnavailable, WorkerError
from taskplane.workers.governance import UsageAnswers
from taskplane.workers.isolation import bwrap_available, wasm_available
from taskplane.workers.leases import Renewals
from taskplane.workers.permits import Permits
from taskplane.workers.sdk import Registry
from taskplane.workers.settings import WorkerSettings
from taskplane.workers.speculation import Speculation

log = logging.getLogger(__name__)


# Classic-protocol options a KIP-848 consumer refuses: the broker owns them there.
_CLASSIC_ONLY = ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy")


def _group_options(kafka_config: dict[str, Any], protocol: str) -> dict[str, Any]:
    config = dict(kafka_config)
    if protocol == "consumer":
        for name in _CLASSIC_ONLY:
            config.pop(name, None)
    return config


def _attempt_contexts(settings: WorkerSettings) -> Any:
    if not settings.tracing:
        return None
    from taskplane.workers.tracing import AttemptContexts

    return AttemptContexts()


class Worker:
    def __init__(self, kafka_config: dict[str, Any], topics: Topics, system: str, registry: Registry,
                 settings: WorkerSettings | None = None, plan: SystemPlan | None = None) -> None:
        self.settings = settings or WorkerSettings()
        self.worker_id = self.settings.worker_id
        self.system = system
        self._registry = registry
        self._topics = topics
        self._serde = Serde()
        self._stop = threading.Event()
        self._stopping = threading.Event()  # attempts stop at their next tool call
        self._tracker = OffsetTracker()
        self._active: dict[tuple[str, str], Assignment] = {}
        # Runs the orchestrator told us stopped (budget): their attempts stop at the next
        # tool call. Bounded: a notice only matters while an attempt of the run runs here.
        self._stopped_runs: deque[str] = deque(maxlen=1_000)
        self._answers = UsageAnswers()  # the run's usage, answering records of runs with a budget
        self._lock = threading.Lock()
        self._slots = Slots(self.settings.concurrency)
        self._claiming = threading.BoundedSemaphore(self.settings.claims_in_flight or self.settings.concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._contexts = _attempt_contexts(self.settings)
        self._async_agents = frozenset(name for name, spec in registry.agents.items() if spec.is_async)
        # (run_id, task, outcome) of the latest attempts, for tests and logs; bounded: a
        # list of every attempt grew by ~200 bytes an attempt for the worker's life.
        self.outcomes: deque[tuple[str, str, str]] = deque(maxlen=1_000)
        self._systems: GlobalTable | None = None
        if plan is None:
            self._systems = GlobalTable(kafka_config, topics.systems, self._serde)
        self._plan = plan or self._definition().plan
        # Read once: the plan is this worker's for its life. Left open, the table cost a
        # consumer's threads and its fetches, idle (docs/benchmarks.md, "Idle wake-ups").
        if self._systems is not None:
            self._systems.close()
        self.isolation_fallback = self._check_isolation()
        self.speculation = (Speculation(self._plan) if self.settings.follow_on_grants and self.settings.speculate
                            else None)
        self._breakers = GlobalTable(kafka_config, topics.breakers, self._serde)
        self._sender = CommandSender(kafka_config, topics.commands, self._serde)
        # Renewals get a producer of their own: never queued behind tool-call records.
        self._renewals = CommandSender(kafka_config, topics.commands, self._serde)
        self._leases = Renewals(self._renewals.send_later)
        # Tool permits: the producer to the governor is made on the first limited call only.
        self._kafka_config = kafka_config
        self._permit_sender: CommandSender | None = None
        self.permits = Permits(self._ask_permit)
        self._inbox = Inbox(kafka_config, topics.inbox, self.worker_id, self._serde, self._late_assignment,
                            self.permits.deliver)
        self._consumer = kafka_clients.consumer(
            _group_options(kafka_config, self.settings.group_protocol), f"{topics.prefix}.workers.{system}",
            start="earliest", protocol=self.settings.group_protocol, tuning={"client.id": self.worker_id})
        self._consumer.subscribe([topics.work], on_revoke=self._revoked)
        # Last: a constructor that raised above leaves no loop thread behind.
        self._agent_loop = AgentLoop(f"agents-{system}", self.settings.concurrency) if self._async_agents else None

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Stop taking work; running attempts release their leases at their next tool call."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def ready(self) -> str | None:
        """None while serving; else why not (a readiness check for /readyz)."""
        if self._stop.is_set():
            return "stopping"
        if self._inbox.broker_away.is_set():
            return "the Kafka broker is away"
        return None

    def run(self) -> None:
        slots = self._slots
        # Room for follow-on grants that arrive while intake filled every slot.
        pool = ThreadPoolExecutor(2 * self.settings.concurrency, thread_name_prefix=f"task-{self.system}")
        self._pool = pool
        log.info("worker %s serving %s (concurrency %d)", self.worker_id, self.system, self.settings.concurrency)
        try:
            while not self._stop.is_set():
                self._commit()
                if not slots.wait_free(0.2) or not self._claiming.acquire(timeout=0.2):
                    continue
                accepted = self._accept(self._consumer.poll(0.2))
                if accepted is None:
                    self._claiming.release()
                    continue
                item, partition, offset = accepted
                self._tracker.started(partition, offset)
                pool.submit(self._handle, item, partition, offset)
        finally:
            self._shutdown(pool)

    def _shutdown(self, pool: ThreadPoolExecutor) -> None:
        self._stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        # Leave the group now (KIP-848: the partitions move at once), so work queued
        # behind this worker's running attempts does not wait for them to wind down.
        self._commit()
        self._consumer.close()
        waiter = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
        waiter.start()
        waiter.join(self.settings.shutdown_grace_s)
        if self._agent_loop is not None:  # async attempts: the same grace, then cancelled
            self._agent_loop.close(self.settings.shutdown_grace_s)
        with self._lock:
            leftover = list(self._active.values())
        for assignment in leftover:  # attempts stuck in a tool: give their leases back now
            self._release(assignment)
        self._inbox.close()
        self._breakers.close()
        if self._systems is not None:
            self._systems.close()
        self._sender.close()
        if self._permit_sender is not None:
            self._permit_sender.close()
        self._leases.close()
        self._renewals.close()
        if self._contexts is not None:  # the agents' spans still buffered
            from taskplane.workers.tracing import shutdown

            shutdown()
        log.info("worker %s stopped (released %d lease(s), %d task(s) started ahead of their grant)",
                 self.worker_id, len(leftover), self.speculation.started if self.speculation else 0)

    # ------------------------------------------------------------ one item

    def _accept(self, message: Message | None) -> tuple[WorkItem, int, int] | None:
        if message is None or message.error() is not None:
            return None
        partition, offset = message.partition(), message.offset()
        if partition is None or offset is None:
            return None
        try:
            _key, _meta, value = decoded_input(self._serde.decode, message.value(), message.key(), (WorkItem,))
        except SerdeError as error:
            log.warning("work: poison record %s@%s: %s", partition, offset, error)
            self._sender.set_aside(self._topics.poison, message, error, f"worker:{self.system}")
            value = None
        if not isinstance(value, WorkItem) or value.system != self.system:
            # Another system's item (or garbage, set aside above): this group is done with it.
            self._tracker.started(partition, offset)
            self._tracker.answered(partition, offset)
            return None
        return value, partition, offset

    def _handle(self, item: WorkItem, partition: int, offset: int) -> None:
        """On a pool thread: claim the item; granted, run the attempt in a slot (it gives
        the slot back when it ends). A claim waiting for its answer holds no slot (the
        free slots are offered for follow-on grants meanwhile), so a grant may take the
        count past the limit by the claims in flight."""
        try:
            try:
                assignment = self._claim(item)
            finally:
                self._claiming.release()
            self._tracker.answered(partition, offset)
            if assignment is None or not assignment.granted:
                reason = "no answer" if assignment is None else assignment.reason
                log.info("claim of %s/%s#%s not granted: %s", item.run_id[:8], item.task, item.attempt, reason)
                return
            self._slots.take()
            if not self._start(assignment, on_this_thread=True):
                self._slots.release()
        except Exception:
            log.exception("claim of %s/%s failed", item.run_id, item.task)
            # offset stays uncommitted: redelivered after a restart or rebalance

    def _claim(self, item: WorkItem) -> Assignment | None:
        key = (item.run_id, item.task, item.attempt)
        asked = 0
        while not self._stopping.is_set():
            box = self._inbox.expect(key)
            asked += 1
            try:
                self._sender.send(ClaimTask(item.run_id, item.task, item.attempt, self.worker_id))
                return box.get(timeout=self.settings.claim_timeout_s)
            except (queue.Empty, StreamsError):
                self._inbox.forget(key)
            if asked == self.settings.claim_attempts:
                # Keep asking: a claim given up on would pin its offset (and the task)
                # until a restart; the broker or the orchestrator may only be restarting.
                log.warning("no answer to the claim of %s/%s after %d tries (is the orchestrator running?)",
                            item.run_id, item.task, asked)
        return None

    def _start(self, assignment: Assignment, *, on_this_thread: bool = False) -> bool:
        """Launch the attempt, or give its lease back when the worker is shutting down;
        whether it started (and so gives its slot back itself)."""
        try:
            self._launch(assignment, on_this_thread=on_this_thread)
            return True
        except RuntimeError:  # the pool or the loop shut down meanwhile
            with self._lock:
                self._active.pop((assignment.run_id, assignment.task), None)
            self._release(assignment)
            return False

    def _launch(self, assignment: Assignment, *, on_this_thread: bool = False) -> None:
        """Run a granted attempt in its slot (taken already; given back when it ends): an
        ``async def`` agent on the event loop, a plain one in the pool, or on this pool
        thread. RuntimeError when the pool or the loop has shut down."""
        with self._lock:  # released at shutdown should it never end
            self._active[(assignment.run_id, assignment.task)] = assignment
        if self._agent_loop is not None and assignment.task in self._async_agents:
            self._agent_loop.start(lambda: self._run_async(assignment))
        elif on_this_thread:
            self._run_attempt(assignment)
        else:
            assert self._pool is not None
            self._pool.submit(self._run_attempt, assignment)

    def _attempt(self, assignment: Assignment) -> Attempt:
        return Attempt(assignment, self._agent(assignment), self._registry, self.settings,
                       self._send_outcome, self._breaker, self._stopping, self.isolation_fallback,
                       self._follow_on, self._sender.send_later, contexts=self._contexts, permits=self.permits,
                       run_stopped=self._stopped_runs.__contains__, answers=self._answers)

    def _ask_permit(self, request: Any) -> None:
        with self._lock:
            if self._permit_sender is None:
                self._permit_sender = CommandSender(self._kafka_config, self._topics.tool_outcomes, self._serde,
                                                    key_of=lambda command: command.tool)
            sender = self._permit_sender
        sender.send(request)

    def _run_attempt(self, assignment: Assignment) -> None:
        outcome = "lost"  # unless reported: the lease expires and the orchestrator retries
        try:
            with self._leases.held(assignment):
                outcome = self._attempt(assignment).run()
        except Exception:
            log.exception("attempt %s/%s could not report its outcome", assignment.run_id, assignment.task)
        finally:
            self._ended(assignment, outcome)

    async def _run_async(self, assignment: Assignment) -> None:
        outcome = "lost"
        slot = [True]  # held until the outcome is written: the agent's work is done then

        async def send(command: Any) -> None:
            delivery = self._write_outcome(command, asyncio.get_running_loop())
            slot[0] = False
            self._slots.release()  # free for follow-on grants while the broker confirms
            await delivery.confirmed()

        try:
            with self._leases.held(assignment):
                outcome = await self._attempt(assignment).run_async(send)
        except asyncio.CancelledError:  # shut down past the grace: its lease is released with the leftovers
            if slot[0]:
                self._slots.release()
            raise
        except Exception:
            log.exception("attempt %s/%s could not report its outcome", assignment.run_id, assignment.task)
        self._ended(assignment, outcome, release=slot[0])

    def _ended(self, assignment: Assignment, outcome: str, release: bool = True) -> None:
        with self._lock:
            self._active.pop((assignment.run_id, assignment.task), None)
        if assignment.policy is not None:
            self._answers.forget((assignment.run_id, assignment.task, assignment.epoch))
        if release:
            self._slots.release()
        self.outcomes.append((assignment.run_id, assignment.task, outcome))

    def _send_outcome(self, command: Any) -> None:
        self._write_outcome(command).wait(30.0)

    def _write_outcome(self, command: Any, loop: asyncio.AbstractEventLoop | None = None) -> Delivery:
        """Write an attempt's outcome; a completion whose follow-on grants it decides
        itself starts those tasks at once (workers/speculation.py)."""
        speculation = self.speculation
        if speculation is None or not isinstance(command, CompleteTask):
            return self._sender.send_later(command, loop)
        with self._lock:
            assignment = self._active.get((command.run_id, command.task))
        if assignment is None or assignment.epoch != command.epoch:
            return self._sender.send_later(command, loop)
        delivery, children = speculation.report(command, assignment, lambda c: self._sender.send_later(c, loop))
        for child in children:
            self._slots.take()
            if not self._start(child):
                self._slots.release()
        return delivery

    def _follow_on(self) -> int:
        """Downstream tasks to take at once: the slot being freed plus the free ones."""
        if self._stop.is_set() or not self.settings.follow_on_grants:
            return 0
        return self._slots.free() + 1

    def _late_assignment(self, assignment: Assignment) -> None:
        """A grant no claim waits for: a follow-on grant, or the answer to a claim we
        stopped waiting for. The lease is ours either way: run it, or give it back."""
        if not assignment.granted:
            if assignment.reason == USAGE_NOTICE:
                self._answers.post((assignment.run_id, assignment.task, assignment.epoch),
                                   assignment.run_tokens, assignment.run_cost_micros)
            elif (assignment.reason or "").startswith(STOPPED_NOTICE):
                self._stopped_runs.append(assignment.run_id)
            return
        if self.speculation is not None and self.speculation.granted(assignment):
            return  # started when the completion that decided this grant was written
        if self._pool is None or self._stop.is_set():
            self._release(assignment)
            return
        self._slots.take()
        if not self._start(assignment):
            self._slots.release()

    def _release(self, assignment: Assignment) -> None:
        try:
            self._sender.send(ReleaseLease(assignment.run_id, assignment.task, self.worker_id, assignment.epoch))
        except Exception as error:
            log.warning("release of %s/%s failed (it will expire): %s", assignment.run_id, assignment.task, error)

    # ------------------------------------------------------------ helpers

    def _agent(self, assignment: Assignment) -> AgentPlan:
        return granted_agent(self._plan, assignment)

    def _breaker(self, tool: str) -> BreakerState | None:
        state = self._breakers.get(tool)
        return state if isinstance(state, BreakerState) else None

    def _commit(self) -> None:
        moved = self._tracker.committable()
        if moved:
            offsets = [TopicPartition(self._topics.work, p, o) for p, o in moved.items()]
            try:
                # Asynchronous: a synchronous commit has no deadline while the broker is away;
                # a lost commit only redelivers claims the orchestrator then refuses.
                self._consumer.commit(offsets=offsets, asynchronous=True)
            except Exception as error:  # revoked meanwhile: the new owner re-reads from the last commit
                log.warning("offset commit failed: %s", error)

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit()
        self._tracker.drop([tp.partition for tp in partitions])

    def _definition(self) -> SystemDefinition:
        assert self._systems is not None
        self._systems.wait_until_caught_up(self.settings.definition_timeout_s)
        definition = self._systems.get(self.system)
        if not isinstance(definition, SystemDefinition):
            self._systems.close()
            raise WorkerError(f"system {self.system!r} is not defined (run `taskplane apply` first)")
        return definition

    def _check_isolation(self) -> frozenset[Isolation]:
        """Refuse to start when a declared isolation cannot run here, unless allowed to
        fall back to ``process``; returns the modes that fall back."""
        needed = {tool.isolation for agent in self._plan.agents for tool in agent.tools}
        fallback: set[Isolation] = set()
        for mode, (ok, why) in ((Isolation.CONTAINER, bwrap_available() if Isolation.CONTAINER in needed
                                 else (True, "")),
                                (Isolation.WASM, wasm_available() if Isolation.WASM in needed else (True, ""))):
            if ok:
                continue
            if not self.settings.allow_isolation_fallback:
                raise IsolationUnavailable(f"isolation {mode.value} needed by {self.system} but {why}; "
                                           "pass --allow-isolation-fallback to run those tools as process")
            log.warning("isolation %s unavailable (%s): running those tools as process", mode.value, why)
            fallback.add(mode)
        for agent in self._plan.agents:
            for tool in agent.tools:
                if tool.isolation is Isolation.WASM and tool.name in self._registry.tools \
                        and self._registry.tools[tool.name].wasm is None:
                    raise IsolationUnavailable(f"tool {tool.name} has isolation wasm but no wasm= module")
        return frozenset(fallback)
