"""Least privileges per role on a secured cluster: which topics each taskplane
component reads and writes, and which consumer groups and transactional ids it uses.
One table for the dev stack's ACLs (devstack/secure.py), the Strimzi ``KafkaUser``
resources (scripts/gen_deploy.py) and docs/security.md.

Topic grants are literal names under the prefix, so a principal of one taskplane
installation reads nothing of another one sharing the cluster. READ and WRITE imply
DESCRIBE in Kafka's authorizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskplane.streams.topics import Topics

ROLES = ("orchestrator", "breaker", "cron", "dispatcher", "projector", "worker", "client", "console")


@dataclass(frozen=True, slots=True)
class Grant:
    """Allow ``operations`` on a resource: kind ``topic``, ``group`` or
    ``transactionalId``; ``prefixed`` matches every name starting with ``name``."""

    kind: str
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False


READ, WRITE = ("Read",), ("Write",)
# Roles and what they touch, by catalog role: (reads, writes).
_TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # Tick commands come from the orchestrator itself; events are folded on restore.
    "orchestrator": (
        ("commands", "events", "orchestrator-changelog", "systems", "breakers"),
        ("commands", "events", "orchestrator-changelog", "work", "inbox", "deadletter",
         "tool-outcomes", "runs", "schedules", "poison", "dispatch"),
    ),  # fmt: skip
    # Its Ticks go to its own input; the tool governor's answers to the asking worker's inbox.
    "breaker": (("tool-outcomes", "breakers"), ("tool-outcomes", "breaker-events", "breakers", "inbox", "poison")),
    # Ticks come from itself; a fired slot is a SubmitRun (and a replace a CancelRun) on commands.
    "cron": (("schedules", "schedule-events", "cron-changelog"),
             ("schedules", "schedule-events", "cron-changelog", "commands", "poison")),
    # Offers and notices in, work items out; its ticks go to its own input.
    "dispatcher": (("dispatch", "dispatch-events", "dispatcher-changelog"),
                   ("dispatch", "dispatch-events", "dispatcher-changelog", "work", "poison")),
    "projector": (("events", "systems"), ("poison",)),
    # Workers ask (claims, renewals, outcomes on commands; tool permits on tool-outcomes);
    # they never write a fact.
    "worker": (("work", "inbox", "breakers", "systems"), ("commands", "tool-outcomes", "poison")),
    # runs: the index a client looks runs up in, and where a duplicate submit is answered
    # schedules: apply's ApplySchedules and `schedules pause|resume`; cron-changelog: `schedules list`
    "client": (("events", "systems", "deadletter", "runs", "cron-changelog"), ("commands", "systems", "schedules")),
    "console": (("events", "systems", "deadletter", "breakers", "runs", "cron-changelog"), ("commands",)),
}


def role_grants(role: str, topics: Topics) -> list[Grant]:
    """What ``role`` may do under ``topics``' prefix; KeyError for an unknown role."""
    reads, writes = _TOPICS[role]
    grants = [Grant("topic", topics.name(t), READ) for t in reads]
    grants += [Grant("topic", topics.name(t), WRITE) for t in writes]
    stem = f"{topics.prefix}."
    if role in ("orchestrator", "breaker", "cron", "dispatcher"):
        # Transactional processors: group and transactional ids carry the prefix
        # (ProcessorSpec.under); a lost changelog is recreated and its config checked.
        changelog = topics.name({"orchestrator": "orchestrator-changelog", "breaker": "breakers",
                                 "cron": "cron-changelog", "dispatcher": "dispatcher-changelog"}[role])
        grants += [
            Grant("topic", changelog, ("Create", "DescribeConfigs")),
            Grant("group", f"{stem}{role}", READ, prefixed=True),
            Grant("transactionalId", f"{stem}{role}", ("Write", "Describe"), prefixed=True),
        ]
    elif role == "projector":
        grants.append(Grant("group", f"{stem}projector", READ, prefixed=True))
    elif role == "worker":
        # The work group per system; the inbox group per worker (not under the prefix).
        grants += [Grant("group", f"{stem}workers.", READ, prefixed=True),
                   Grant("group", "inbox-", READ, prefixed=True)]
    else:  # client, console: readers that commit nothing, named taskplane-*
        grants.append(Grant("group", "taskplane-", READ, prefixed=True))
    return grants
