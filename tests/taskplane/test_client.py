"""The public client against the real broker, orchestrator and a worker process:
results from the log, failures, cancel and replay, history, bad input, asyncio."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from taskplane import (
    AsyncClient,
    Client,
    RunFailed,
    RunTimeout,
    UnknownRun,
    UnknownSystem,
    UserInputError,
)
from taskplane.exceptions import InputTooLarge
from tests.taskplane.client_plane import Plane, client_commands, plane_fixture  # noqa: F401  (the fixture)

pytestmark = pytest.mark.kafka


def kinds(events: Any) -> list[str]:
    return [type(event).__name__ for event in events]


def test_result_is_the_final_tasks_outputs(plane: Plane) -> None:
    run = plane.client.submit("pair", {"text": "hello"})
    assert run.result(timeout=120) == {"count": {"text": "HELLO", "letters": 5}}
    info = run.status()
    assert (info.status, info.system, info.tasks) == ("succeeded", "pair", {"shout": "succeeded", "count": "succeeded"})
    assert info.submitted_ms is not None and info.finished_ms is not None and info.finished_ms >= info.submitted_ms
    seen = kinds(run.events(timeout=10))
    assert seen[0] == "RunSubmitted" and seen[-1] == "RunSucceeded"
    assert seen.count("TaskSucceeded") == 2 and seen.count("ToolCallSucceeded") == 1


def test_another_client_reads_a_run_from_the_log(plane: Plane) -> None:
    run = plane.client.submit("pair", {"text": "abc"})
    outputs = run.result(timeout=120)
    with Client(plane.bootstrap, topic_prefix=plane.topics.prefix) as other:
        again = other.run(run.run_id)
        assert again.status().status == "succeeded"
        assert again.result(timeout=0) == outputs
        assert kinds(again.events(timeout=0)) == kinds(run.events(timeout=0))
        with pytest.raises(UnknownRun):
            other.run("no-such-run")


def test_an_idempotency_key_gives_the_same_run(plane: Plane) -> None:
    first = plane.client.submit("pair", {"text": "once"}, idempotency_key="order-1")
    outputs = first.result(timeout=120)
    with Client(plane.bootstrap, topic_prefix=plane.topics.prefix) as other:
        second = other.submit("pair", {"text": "once"}, idempotency_key="order-1")
        assert second.run_id == first.run_id
        assert second.result(timeout=60) == outputs  # the orchestrator's answer: nothing ran again
    assert kinds(first.events(timeout=0)).count("RunSucceeded") == 1


def test_a_dead_letter_raises_run_failed_and_can_be_replayed(plane: Plane) -> None:
    run = plane.client.submit("doomed", {})
    with pytest.raises(RunFailed) as failed:
        run.result(timeout=120)
    assert (failed.value.status, failed.value.task, failed.value.attempts) == ("dead_lettered", "doomed", 1)
    assert "the dependency is down" in (failed.value.error or "")
    with pytest.raises(UserInputError, match="no task 'nope'"):
        plane.client.replay(run.run_id, "nope")

    plane.client.replay(run.run_id, "doomed")
    seen: list[str] = []
    for event in run.events(timeout=120):  # the replay runs, fails again, dead-letters again
        seen.append(type(event).__name__)
        if "TaskReplayed" in seen and seen[-1] == "TaskDeadLettered":
            break
    assert run.status().status == "dead_lettered"

    run.cancel("given up")
    assert kinds(run.events(timeout=120))[-1] == "RunCancelled"  # events() ends when the run does
    with pytest.raises(RunFailed) as cancelled:
        run.result(timeout=120)
    assert (cancelled.value.status, cancelled.value.reason) == ("cancelled", "given up")


def test_cancel_a_running_run_and_time_out_a_wait(plane: Plane) -> None:
    run = plane.client.submit("napper", {"seconds": 60})
    for event in run.events(timeout=120):
        if type(event).__name__ == "LeaseGranted":
            break
    with pytest.raises(RunTimeout) as timed_out:  # it sleeps a minute: it cannot be done now
        run.result(timeout=0)
    assert isinstance(timed_out.value, TimeoutError)
    plane.client.cancel(run.run_id, "no time")
    with pytest.raises(RunFailed) as cancelled:
        run.result(timeout=120)
    assert cancelled.value.status == "cancelled"
    with pytest.raises(UserInputError, match="already cancelled"):
        run.cancel()


def test_runs_lists_the_log(plane: Plane) -> None:
    run = plane.client.submit("pair", {"text": "listed"})
    run.result(timeout=120)
    succeeded = plane.client.runs(system="pair", status="succeeded")
    assert run.run_id in {info.run_id for info in succeeded}
    assert all(info.system == "pair" and info.status == "succeeded" for info in succeeded)
    assert run.run_id not in {info.run_id for info in plane.client.runs(system="doomed")}


def test_bad_input_writes_nothing(plane: Plane) -> None:
    before = client_commands(plane)
    with pytest.raises(UnknownSystem) as unknown:
        plane.client.submit("pear", {"text": "x"})
    assert "'pear'" in str(unknown.value) and "pair" in str(unknown.value) and "napper" in str(unknown.value)
    with pytest.raises(InputTooLarge) as large:
        plane.client.submit("pair", {"text": "x" * 2_000_000})
    assert large.value.limit <= 1_048_588 and str(large.value.limit) in str(large.value)
    with pytest.raises(UserInputError, match="not JSON-serializable"):
        plane.client.submit("pair", {"text": {1, 2}})
    for tenant in ("", 5, b"acme"):  # "" was a run without a tenant; the others a TypeError naming nothing
        with pytest.raises(ValueError, match=f"tenant: {tenant!r} is not a tenant name"):
            plane.client.submit("pair", {"text": "x"}, tenant=tenant)  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="Out of range float values"):  # NaN was written: no other parser reads it
        plane.client.submit("pair", {"text": float("nan")})
    assert client_commands(plane) == before


def test_a_thousand_async_waits_share_one_reader(plane: Plane) -> None:
    async def main() -> None:
        async with AsyncClient(plane.bootstrap, topic_prefix=plane.topics.prefix) as client:
            runs = await client.submit_many("empty", [{"i": i} for i in range(1000)])
            assert len({run.run_id for run in runs}) == 1000
            assert await asyncio.gather(*(run.result(timeout=300) for run in runs)) == [{}] * 1000
            readers = [t for t in threading.enumerate() if t.name == f"runs-{plane.topics.events}"]
            assert len(readers) == 2  # this client's and the plane's shared client: one each

            run = await client.submit("pair", {"text": "async"})
            assert await run.result(timeout=120) == {"count": {"text": "ASYNC", "letters": 5}}
            assert kinds([event async for event in run.events(timeout=10)])[-1] == "RunSucceeded"
            again = await client.run(run.run_id)
            assert again.status().status == "succeeded"

    asyncio.run(main())
