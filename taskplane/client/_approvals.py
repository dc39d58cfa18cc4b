"""Approvals for people: list what waits, and decide it, signed with the approval key.

The decision is a ``DecideApproval`` signed with ``TASKPLANE_APPROVAL_KEY``
(``contract/approvals.py``); the orchestrator checks the signature and records who
decided and when. Listing folds the approval events of the ``events`` topic (like
``Client.runs``); deciding follows the one run on the log until the orchestrator
answered. docs/governance.md, "Approvals".
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from taskplane.contract import messages as m
from taskplane.contract.approvals import APPROVAL_KEY_ENV, sign
from taskplane.exceptions import RunTimeout, UserInputError

if TYPE_CHECKING:
    from taskplane.client.client import Client

FINISHED = (m.RunSucceeded, m.RunFailed, m.RunCancelled)


@dataclass(frozen=True, slots=True)
class ApprovalInfo:
    approval_id: str
    run_id: str
    system: str
    task: str
    tool: str
    input_preview: str
    reason: str
    status: str  # pending | granted | denied | expired | closed (the run ended while it waited)
    requested_ms: int
    expires_ms: int
    who: str | None = None
    decided_ms: int | None = None
    decision_reason: str | None = None

    def age_ms(self, now_ms: int) -> int:
        return max(0, now_ms - self.requested_ms)


def fold_approvals(events: Iterable[tuple[str, Any]]) -> dict[str, ApprovalInfo]:
    """Every approval of ``(run_id, event)`` pairs, by id; a pending one of a run that
    ended is ``closed``."""
    systems: dict[str, str] = {}
    found: dict[str, ApprovalInfo] = {}
    for run_id, event in events:
        match event:
            case m.RunSubmitted():
                systems[run_id] = event.plan.name
            case m.ApprovalRequested():
                found[event.approval_id] = ApprovalInfo(
                    event.approval_id, run_id, systems.get(run_id, ""), event.task, event.tool,
                    event.input_preview, event.reason, "pending", event.requested_ms, event.expires_ms)
            case m.ApprovalGranted() | m.ApprovalDenied() if event.approval_id in found:
                status = "granted" if isinstance(event, m.ApprovalGranted) else "denied"
                found[event.approval_id] = replace(found[event.approval_id], status=status, who=event.who,
                                                   decided_ms=event.decided_ms, decision_reason=event.reason)
            case m.ApprovalExpired() if event.approval_id in found:
                found[event.approval_id] = replace(found[event.approval_id], status="expired")
            case m.RunSucceeded() | m.RunFailed() | m.RunCancelled():
                for key, info in list(found.items()):
                    if info.run_id == run_id and info.status == "pending":
                        found[key] = replace(info, status="closed")
    return found


def approval_key(given: str | bytes | None = None) -> bytes:
    """The key a person signs with: ``given``, else ``TASKPLANE_APPROVAL_KEY``."""
    key = given if given is not None else os.environ.get(APPROVAL_KEY_ENV)
    if not key:
        raise UserInputError(f"deciding an approval needs the approval key: set {APPROVAL_KEY_ENV} "
                             "(people hold it; workers never do)", field=APPROVAL_KEY_ENV)
    return key.encode() if isinstance(key, str) else key


def person(who: str | None) -> str:
    """Who decides: ``who``, else the login user."""
    name = (who or getpass.getuser() or "").strip()
    if not name:
        raise UserInputError("say who decides (--as NAME)", field="as")
    return name


def list_approvals(client: Client, status: str | None = "pending") -> list[ApprovalInfo]:
    """Approvals on the log (with ``status``), oldest request first."""
    from taskplane.streams.log_reader import read_to_end

    serde = client._ready().serde
    pairs = []
    for _partition, key, value in read_to_end(client.kafka_config, client.topics.events,
                                              group_id="taskplane-client"):
        if value is None or not key:
            continue
        pairs.append((key, serde.decode(value)[1]))
    found = fold_approvals(pairs).values()
    return sorted((a for a in found if status is None or a.status == status), key=lambda a: a.requested_ms)


def decide(client: Client, approval_id: str, granted: bool, *, who: str | None, reason: str,
           run_id: str | None, key: str | bytes | None, timeout: float) -> ApprovalInfo:
    """Sign and send a decision, then wait for the orchestrator's answer: the approval as
    decided, or ``UserInputError`` with the reason it refused (exit 2)."""
    secret, name = approval_key(key), person(who)
    if not granted and not reason.strip():
        raise UserInputError("a denial says why (--reason)", field="reason")
    if run_id is None:
        known = {a.approval_id: a for a in list_approvals(client, status=None)}
        if approval_id not in known:
            raise UserInputError(f"no approval {approval_id!r} on the log", field="approval")
        run_id = known[approval_id].run_id
    watch = client._ready().follower.watch(run_id, history=True)
    client._wait(watch, lambda view: view.known, timeout)
    with watch.changed:
        mine = fold_approvals((run_id, e) for e in watch.events).get(approval_id)
        seen = len(watch.events)
    if mine is None:
        raise UserInputError(f"run {run_id} has no approval {approval_id!r}", field="approval")
    if mine.status != "pending":
        raise UserInputError(f"approval {approval_id} is already {mine.status}", field="approval")
    decided_ms = int(time.time() * 1000)
    signature = sign(secret, approval_id, granted, name, decided_ms)
    client._ready().publish([m.DecideApproval(run_id, approval_id, granted, name, decided_ms, reason, signature)])
    return _answer(client, watch, run_id, approval_id, seen, timeout)


def _answer(client: Client, watch: Any, run_id: str, approval_id: str, seen: int, timeout: float) -> ApprovalInfo:
    deadline = time.monotonic() + timeout
    answered = False
    with watch.changed:
        while True:
            for event in watch.events[seen:]:
                if isinstance(event, m.CommandRejected) and event.command == "DecideApproval" \
                        and event.task == approval_id:
                    raise UserInputError(f"the orchestrator refused the decision: {event.reason}", field="approval")
                if isinstance(event, m.ApprovalGranted | m.ApprovalDenied | m.ApprovalExpired) \
                        and event.approval_id == approval_id:
                    answered = True
            if answered:
                return fold_approvals((run_id, e) for e in watch.events)[approval_id]
            seen = len(watch.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunTimeout(f"approval {approval_id}: no answer from the orchestrator after {timeout:g}s")
            client._ready().follower.check()
            watch.changed.wait(min(1.0, left))
