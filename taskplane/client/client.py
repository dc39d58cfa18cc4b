"""The public client: submit runs, wait for their results, follow, cancel and replay.

    from taskplane import Client

    with Client() as client:                       # TASKPLANE_* settings, else `taskplane dev up`
        run = client.submit("document-pipeline", {"folder": "docs/"})
        print(run.result(timeout=60))              # {final task: its output}

Results come from the ``events`` topic, not from the read model: the client works
without the projector. All of a client's waits share one consumer (``_run_follower``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from taskplane.client import _approvals
from taskplane.client._approvals import ApprovalInfo
from taskplane.client._parts import ClientParts
from taskplane.client._run_follower import Watch
from taskplane.client._run_view import RunInfo, RunStatus, RunView
from taskplane.contract import messages as m
from taskplane.exceptions import (
    ClientError,
    RunFailed,
    RunTimeout,
    UnknownRun,
    UnknownSystem,
    UserInputError,
)
from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import Topics

_CHECK_EVERY_S = 1.0  # how often a long wait looks whether the follower is still alive


class Client:
    """Connected to one taskplane deployment (a Kafka cluster and a topic prefix).

    Settings are the CLI's: ``TASKPLANE_BOOTSTRAP_SERVERS``, ``TASKPLANE_TOPIC_PREFIX``,
    ``TASKPLANE_KAFKA_*``, else the stack of ``taskplane dev up``; arguments win.
    Thread-safe; close it (or use ``with``) to stop its reader.
    """

    def __init__(self, bootstrap_servers: str | None = None, *, topic_prefix: str | None = None,
                 settings: StackSettings | None = None, kafka_options: Mapping[str, Any] | None = None) -> None:
        settings = settings or StackSettings()
        if bootstrap_servers is None and settings.bootstrap_servers is None:
            from taskplane.devstack.stack import DevStackNotRunning, resolve_endpoints

            try:
                bootstrap_servers = resolve_endpoints(settings).bootstrap_servers
            except DevStackNotRunning as error:
                raise UserInputError(str(error), field="TASKPLANE_BOOTSTRAP_SERVERS") from None
        self.kafka_config = settings.kafka_config(bootstrap_servers, {"log_level": 3, **(kafka_options or {})})
        self.topics = Topics(topic_prefix or settings.topic_prefix)
        self._lock = threading.Lock()
        self._parts: ClientParts | None = None  # made on first use

    # ------------------------------------------------------------ runs

    def submit(self, system: str, input: Any = None, idempotency_key: str | None = None, *,
               tenant: str | None = None, priority: int | None = None) -> RunHandle:
        """Start a run of an applied system with ``input`` (any JSON value). The same
        ``idempotency_key`` gives the same run (a repeated submit starts nothing).
        ``tenant`` and ``priority`` (1..5, 5 first) put it in the system's fair share
        (docs/scheduling.md); a bad one is a ValueError."""
        return self.submit_many(system, [input], [idempotency_key], tenant=tenant, priority=priority)[0]

    def submit_many(self, system: str, inputs: list[Any],
                    idempotency_keys: list[str | None] | None = None, *,
                    tenant: str | None = None, priority: int | None = None) -> list[RunHandle]:
        """Several runs of one system, delivered together (one flush)."""
        parts = self._ready()
        commands = parts.submissions(system, inputs, idempotency_keys or [None] * len(inputs), tenant, priority)
        # A keyed submit reads nothing first: the orchestrator answers it (a new run, or
        # the run the key already stands for), and the handle follows the answer.
        ids = [None if c.idempotency_key is None else uuid.uuid4().hex for c in commands]
        watches = [parts.follower.watch(c.run_id, history=False, submit_id=i) for c, i in zip(commands, ids, strict=True)]
        parts.publish(commands, ids)
        return [RunHandle(self, watch) for watch in watches]

    def run(self, run_id: str) -> RunHandle:
        """A handle on a run already on the log; ``UnknownRun`` when there is none.
        Looked up in the ``runs`` index, never by reading ``events`` from its start."""
        watch = self._ready().follower.watch(run_id, history=True)
        if not watch.view.known:
            raise UnknownRun(run_id)
        return RunHandle(self, watch)

    def runs(self, system: str | None = None, status: RunStatus | None = None) -> list[RunInfo]:
        """Every run on the log (of ``system``, with ``status``), newest first. Reads
        the whole ``events`` topic: for dashboards, use the read model."""
        from taskplane.streams.log_reader import read_to_end

        parts = self._ready()
        views: dict[str, RunView] = {}
        for _partition, key, value in read_to_end(self.kafka_config, self.topics.events, group_id="taskplane-client"):
            if value is None or not key:
                continue
            event = parts.serde.decode(value)[1]
            view = views.get(key)
            if view is None:
                view = views[key] = RunView(key)
            view.apply(view.next_offset, event)  # one reader, in order: every record is new
        found = [v.info() for v in views.values() if v.known and (system is None or v.system == system)
                 and (status is None or v.status == status)]
        return sorted(found, key=lambda info: info.submitted_ms or 0, reverse=True)

    def cancel(self, run_id: str, reason: str = "cancelled by a client") -> None:
        """Ask the orchestrator to cancel a run that is still going."""
        handle = self.run(run_id)
        info = handle.status()
        if info.done:
            raise UserInputError(f"run {run_id} already {info.status}", field="run")
        self._ready().publish([m.CancelRun(run_id, reason)])

    def replay(self, run_id: str, task: str, requested_by: str = "client") -> RunHandle:
        """Resume a dead-lettered task (its completed tool calls stay completed)."""
        handle = self.run(run_id)
        info = handle.status()
        if task not in info.tasks:
            raise UserInputError(f"run {run_id} has no task {task!r} (tasks: {', '.join(info.tasks)})",
                                 field="task")
        if info.tasks[task] != "dead_lettered":
            raise UserInputError(f"task {task!r} of run {run_id} is {info.tasks[task]}, not dead-lettered",
                                 field="task")
        self._ready().publish([m.ReplayTask(run_id, task, requested_by)])
        return handle

    # ------------------------------------------------------------ approvals

    def approvals(self, status: str | None = "pending") -> list[ApprovalInfo]:
        """Approvals on the log (``pending`` by default; None: all), oldest first."""
        return _approvals.list_approvals(self, status)

    def approve(self, approval_id: str, *, who: str | None = None, reason: str = "", run_id: str | None = None,
                key: str | bytes | None = None, timeout: float = 30.0) -> ApprovalInfo:
        """Grant a pending approval as ``who`` (default: the login user), signed with
        ``key`` (default: TASKPLANE_APPROVAL_KEY); returns it as the orchestrator recorded it."""
        return _approvals.decide(self, approval_id, True, who=who, reason=reason, run_id=run_id, key=key,
                                 timeout=timeout)

    def deny(self, approval_id: str, reason: str, *, who: str | None = None, run_id: str | None = None,
             key: str | bytes | None = None, timeout: float = 30.0) -> ApprovalInfo:
        """Deny a pending approval, saying why: its task fails ``approval_denied``."""
        return _approvals.decide(self, approval_id, False, who=who, reason=reason, run_id=run_id, key=key,
                                 timeout=timeout)

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            parts, self._parts = self._parts, None
        if parts is not None:
            parts.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ready(self) -> ClientParts:
        with self._lock:
            if self._parts is None:
                self._parts = ClientParts(self.kafka_config, self.topics)
            return self._parts

    def _wait(self, watch: Watch, until: Any, timeout: float | None) -> None:
        """Block until ``until(view)`` holds; RunTimeout after ``timeout`` seconds."""
        follower = self._ready().follower
        deadline = None if timeout is None else time.monotonic() + timeout
        with watch.changed:
            while not until(watch.view):
                follower.check()
                left = _CHECK_EVERY_S if deadline is None else min(_CHECK_EVERY_S, deadline - time.monotonic())
                if left <= 0:
                    raise RunTimeout(watch.view.stalled(timeout))
                watch.changed.wait(left)


class RunHandle:
    """One run. Every handle of a run shares the client's view of it."""

    def __init__(self, client: Client, watch: Watch) -> None:
        self._client, self._watch = client, watch
        self.run_id = watch.view.run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r}, {self.status().status})"

    def status(self) -> RunInfo:
        self._resolve_plan()
        with self._watch.changed:
            return self._watch.view.info()

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The outputs of the run's final tasks, by task. Raises ``RunFailed`` (failed,
        cancelled, rejected, or a task dead-lettered) and ``RunTimeout`` (a
        ``TimeoutError``) when ``timeout`` seconds pass first."""
        self._client._wait(self._watch, lambda view: view.settled, timeout)
        self._complete()
        return outcome(self._watch)

    def cancel(self, reason: str = "cancelled by a client") -> None:
        self._client.cancel(self.run_id, reason)

    def _complete(self, history: bool = False) -> None:
        """What a view that started from the run's record lacks, read from the log when
        needed: its events (``history``), or the outputs of a run whose record has none
        (the orchestrator retired them); then its plan."""
        with self._watch.changed:
            view = self._watch.view
            needed = self._watch.seeded and (history or (not view.outputs_known and view.status == "succeeded"))
        if needed:
            self._client._ready().follower.reload(self._watch)
        self._resolve_plan()

    def _resolve_plan(self) -> None:
        """A run's events name its plan (name and version) without the body: the tasks
        and which are final come from the pinned version on ``systems``, looked up once."""
        with self._watch.changed:
            reference = self._watch.view.plan_reference
        if reference is None:
            return
        plan = self._client._ready().plan(reference)
        if plan is not None:
            with self._watch.changed:
                self._watch.view.use_plan(plan)

    def replay(self, task: str) -> None:
        self._client.replay(self.run_id, task)

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """The run's events (``taskplane.contract.messages``), from its
        submit on, as they happen; ends after the run finished. ``RunTimeout`` when
        ``timeout`` seconds pass without the run finishing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._complete(history=True)
        seen = 0
        while True:
            with self._watch.changed:
                fresh = self._watch.events[seen:]
                done = self._watch.view.status in ("succeeded", "failed", "cancelled", "rejected")
            seen += len(fresh)
            yield from fresh
            if done:
                return
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._client._wait(self._watch, lambda view, n=seen: view.applied > n, left)


def outcome(watch: Watch) -> dict[str, Any]:
    """A settled run's result, or the RunFailed that says why there is none."""
    with watch.changed:
        view = watch.view
        if view.status == "succeeded":
            return view.result()
        if view.status == "dead_lettered":
            letter = next(iter(view.dead_letters.values()))
            raise RunFailed(view.run_id, "dead_lettered", f"task {letter.task} dead-lettered after "
                            f"{letter.attempts} attempts: {letter.error}", letter.task, letter.error, letter.attempts)
        raise RunFailed(view.run_id, view.status, view.reason or view.status)


__all__ = ["Client", "ClientError", "RunFailed", "RunHandle", "RunInfo", "RunTimeout", "UnknownRun",
           "UnknownSystem"]
