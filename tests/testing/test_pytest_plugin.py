"""The pytest plugin's fixtures: ``taskplane_sim`` passes a holding system and fails a
test with the report otherwise; ``taskplane_stack`` is a broker a client can use."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from taskplane.testing.pytest_plugin import Simulator, Stack

PAYMENTS = Path(__file__).resolve().parents[2] / "examples" / "payment-processor"
NAIVE = str(Path(__file__).resolve().parent / "naive_payment_tools.py")


def test_taskplane_sim_holds_and_fails_with_the_report(taskplane_sim: Simulator) -> None:
    report = taskplane_sim.holds(PAYMENTS / "system.yaml", str(PAYMENTS / "tools.py"), PAYMENTS / "runs.jsonl",
                                 runs=20, seeds=2)
    assert report.passed == 2
    with pytest.raises(pytest.fail.Exception, match="reproduce the case:  taskplane simulate"):
        taskplane_sim.holds(PAYMENTS / "system.yaml", NAIVE, PAYMENTS / "runs.jsonl", runs=100, seeds=20)


@pytest.mark.kafka
def test_taskplane_stack_is_a_broker(monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str,
                                     request: pytest.FixtureRequest) -> None:
    # The session's broker stands in as the external one (a second local broker would
    # start another JVM for the same check).
    monkeypatch.setenv("TASKPLANE_BOOTSTRAP_SERVERS", kafka_bootstrap)
    stack: Stack = request.getfixturevalue("taskplane_stack")
    assert stack.how == "external"
    topic = f"plugin-{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = dict(stack.kafka_config)
    admin = AdminClient(config)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer(config)
    producer.produce(topic, b"hello")
    assert producer.flush(30) == 0
    consumer = Consumer({**config, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    message = None
    for _ in range(60):
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            break
    consumer.close()
    assert message is not None and message.value() == b"hello"
