"""Submits with an idempotency key and lookups by run id, answered from the ``runs``
index and the orchestrator's answer to a duplicate, never from a run's whole history:
on the real broker, with the orchestrator, a worker process, and a restart."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from typer.testing import CliRunner

from taskplane import Client, RunFailed, UnknownRun
from taskplane.cli import app
from taskplane.contract.messages import CommandRejected, RunRecord, RunSubmitted
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.serde import Serde
from taskplane.testing import ProcessorThreads
from tests.taskplane.client_plane import Plane, plane_fixture  # noqa: F401  (the fixture)

pytestmark = pytest.mark.kafka


def run_log(plane: Plane, topic: str, run_id: str) -> list[Any]:
    serde = Serde()
    return [serde.decode(value)[1] for _p, key, value in read_to_end(plane.kafka, topic)
            if key == run_id and value is not None]


def new_client(plane: Plane) -> Client:
    return Client(plane.bootstrap, topic_prefix=plane.topics.prefix)


def test_a_keyed_submit_of_a_finished_run_answers_with_it(plane: Plane) -> None:
    first = plane.client.submit("pair", {"text": "once"}, idempotency_key="index-1")
    outputs = first.result(timeout=120)
    with new_client(plane) as other:
        again = other.submit("pair", {"text": "ignored"}, idempotency_key="index-1")
        assert again.run_id == first.run_id
        assert again.result(timeout=60) == outputs
        assert again.status().tasks == {"shout": "succeeded", "count": "succeeded"}
        assert [type(e).__name__ for e in again.events(timeout=60)][0] == "RunSubmitted"  # its history, on demand
    events = run_log(plane, plane.topics.events, first.run_id)
    assert sum(isinstance(e, RunSubmitted) for e in events) == 1
    # one rejected submit: the second one (a worker's claim may be rejected too, under load)
    assert sum(isinstance(e, CommandRejected) and e.command == "SubmitRun" for e in events) == 1
    final = run_log(plane, plane.topics.runs, first.run_id)[-1]
    assert isinstance(final, RunRecord) and final.status == "succeeded"


def test_a_keyed_submit_of_a_running_run_follows_it(plane: Plane) -> None:
    first = plane.client.submit("napper", {"seconds": 2}, idempotency_key="index-nap")
    for event in first.events(timeout=120):
        if isinstance(event, RunSubmitted):
            break
    with new_client(plane) as other:
        again = other.submit("napper", {"seconds": 2}, idempotency_key="index-nap")
        assert again.result(timeout=120) == {"nap": {"slept": 2.0}}
        looked_up = other.run(first.run_id)  # the same watch: one view per run and client
        assert looked_up.status().status == "succeeded"
    with new_client(plane) as third:
        assert third.run(first.run_id).result(timeout=60) == {"nap": {"slept": 2.0}}
    assert sum(isinstance(e, RunSubmitted) for e in run_log(plane, plane.topics.events, first.run_id)) == 1


def test_a_lookup_of_a_run_still_going_reads_its_events_since_its_submit(plane: Plane) -> None:
    first = plane.client.submit("napper", {"seconds": 60})  # still going at the lookup, however slow the host
    for event in first.events(timeout=120):
        if type(event).__name__ == "LeaseGranted":
            break
    with new_client(plane) as other:
        handle = other.run(first.run_id)
        assert handle.status().status == "running" and handle.status().tasks["nap"] == "leased"
        other.cancel(first.run_id, "looked up")  # what comes next reaches the looked-up handle live
        with pytest.raises(RunFailed) as cancelled:
            handle.result(timeout=120)
        assert cancelled.value.status == "cancelled"


def test_same_key_submits_at_once_give_one_run(plane: Plane) -> None:
    clients = [new_client(plane) for _ in range(4)]
    barrier = threading.Barrier(len(clients))
    handles: list[Any] = [None] * len(clients)

    def submit(index: int) -> None:
        clients[index].submit("pair", {"text": "race"}, idempotency_key="index-race")  # warm: systems read
        barrier.wait()
        handles[index] = clients[index].submit("pair", {"text": f"race {index}"}, idempotency_key="index-race-2")

    try:
        threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(clients))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        results = [handle.result(timeout=120) for handle in handles]
    finally:
        for client in clients:
            client.close()
    assert len({handle.run_id for handle in handles}) == 1
    assert len({str(result) for result in results}) == 1
    events = run_log(plane, plane.topics.events, handles[0].run_id)
    assert sum(isinstance(e, RunSubmitted) for e in events) == 1
    assert sum(isinstance(e, CommandRejected) and e.command == "SubmitRun" for e in events) == len(clients) - 1


def test_lookups_of_an_unknown_run(plane: Plane) -> None:
    with new_client(plane) as other:
        for run_id in ("no-such-run", "0" * 32):
            with pytest.raises(UnknownRun):
                other.run(run_id)
    cli = CliRunner().invoke(app, ["result", "no-such-run", "--timeout", "5"], env=plane.client_env())
    assert cli.exit_code == 2 and "no-such-run" in cli.stderr and "Traceback" not in cli.stderr


def test_a_rejected_submit_is_answered_as_rejected(plane: Plane) -> None:
    with new_client(plane) as other:
        run = other.submit("empty", None, idempotency_key="index-empty")
        assert run.result(timeout=60) == {}
    with new_client(plane) as other:
        with pytest.raises(UnknownRun):
            other.run("index-rejected-never-submitted")
        again = other.submit("empty", None, idempotency_key="index-empty")
        assert again.result(timeout=60) == {}


def test_keyed_submits_and_lookups_after_an_orchestrator_restart(plane: Plane) -> None:
    before = plane.client.submit("pair", {"text": "restart"}, idempotency_key="index-restart")
    outputs = before.result(timeout=120)
    assert plane.processors is not None
    plane.processors.stop()
    plane.processors = ProcessorThreads(plane.kafka, plane.topics, None).start()
    with new_client(plane) as other:
        again = other.submit("pair", {"text": "restart"}, idempotency_key="index-restart")
        assert again.run_id == before.run_id and again.result(timeout=120) == outputs
        assert other.run(before.run_id).result(timeout=60) == outputs
        fresh = other.submit("pair", {"text": "after"}, idempotency_key="index-after-restart")
        assert fresh.result(timeout=120) == {"count": {"text": "AFTER", "letters": 5}}
        failing = other.submit("doomed", {"what": "x"}, idempotency_key="index-doomed")
        with pytest.raises(RunFailed):
            failing.result(timeout=120)
    assert sum(isinstance(e, RunSubmitted) for e in run_log(plane, plane.topics.events, before.run_id)) == 1
