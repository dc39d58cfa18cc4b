"""``taskplane rebuild state``: fold ``events`` through the orchestrator's evolve and
compare, byte for byte, with the changelog (invariant 4); optionally write the
rebuilt states that differ."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskplane.contract.plans import PlanBook
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import KafkaIOError
from taskplane.streams.offsets import read_all
from taskplane.streams.plan_source import SystemsPlans
from taskplane.streams.runtime import state_meta
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics


@dataclass(slots=True)
class StateComparison:
    keys: int = 0
    equal: int = 0
    differing: set[str] = field(default_factory=set)
    rebuilt: dict[str, tuple[int, bytes | None]] = field(default_factory=dict)  # key -> (partition, value)


def compare_states(kafka_config: dict[str, Any], topics: Topics) -> StateComparison:
    """Fold ``events`` with the orchestrator's evolve; compare encoded states with the changelog."""
    plans = SystemsPlans(kafka_config, topics.systems)  # what RunSubmitted references
    plans.start()
    decider, serde = OrchestratorDecider(PlanBook(plans)), Serde()
    states: dict[str, Any] = {}
    partition_of: dict[str, int] = {}
    try:
        for partition, key, value in read_all(kafka_config, topics.events):
            if value is None:
                continue
            states[key] = decider.evolve(states.get(key), serde.decode(value)[1])
            partition_of[key] = partition
    finally:
        plans.close()
    live: dict[str, bytes | None] = {}
    for _partition, key, value in read_all(kafka_config, topics.orchestrator_changelog):
        live[key] = value
    result = StateComparison()
    for key in sorted(set(states) | {k for k, v in live.items() if v is not None}):
        state = states.get(key)
        encoded = None if state is None else serde.encode(decider.snapshot(state), state_meta(key))
        result.keys += 1
        result.rebuilt[key] = (partition_of.get(key, -1), encoded)
        if encoded == live.get(key):
            result.equal += 1
        else:
            result.differing.add(key)
    return result


def write_states(kafka_config: dict[str, Any], topics: Topics, result: StateComparison) -> None:
    """Produce the rebuilt states that differ to the changelog, on their run's partition."""
    producer = kafka_clients.producer(kafka_config)
    changelog = topics.orchestrator_changelog
    for key in sorted(result.differing):
        partition, value = result.rebuilt[key]
        if partition >= 0:
            producer.produce(changelog, value, key, partition)
        else:
            producer.produce(changelog, value, key)
    if producer.flush(30):
        raise KafkaIOError("some rebuilt states were not written; run again", retryable=True)
