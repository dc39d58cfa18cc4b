"""Fleet-wide tool limits on the real broker: two worker processes calling a tool capped
at one call at a time never overlap, waiting burns no retry, and a worker SIGKILLed
while it holds the permit hands it to the call's next attempt (docs/scheduling.md)."""

from __future__ import annotations

import json

import pytest

from taskplane.contract import messages as m
from taskplane.contract.permits import PermitGranted
from taskplane.testing import EventLog
from tests.e2e.e2e_pipeline import E2E_TOOLS, Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
LIMITED = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: limited}
spec:
  agents:
    - name: limited
      tools:
        - limited.work: {timeout: 20s, concurrency: 1, rateLimit: 600/min}
  execution: {leaseTimeout: 2s, maxRetries: 3, initialBackoff: 200ms}
"""


def overlap(results: list[dict[str, float]]) -> int:
    """The most calls running at one moment."""
    edges = sorted([(r["start"], 1) for r in results] + [(r["end"], -1) for r in results])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_calls_to_a_capped_tool_never_overlap_and_wait_without_failing(pipeline: Pipeline) -> None:
    plan = pipeline.define(LIMITED)
    for name in ("w1", "w2"):
        pipeline.worker(name, {"limited": E2E_TOOLS})
    runs = [pipeline.publisher.submit_run(plan, {"seconds": 0.3, "n": n}) for n in range(6)]
    pipeline.publisher.flush()
    pipeline.wait(lambda log: len(log.events(m.RunSucceeded)) == len(runs), 90)

    calls = [json.loads(e.result) for e in pipeline.log.events(m.ToolCallSucceeded)]
    assert len(calls) == len(runs) and overlap(calls) == 1
    assert pipeline.log.events(m.AttemptFailed) == []  # waiting for a permit is not a failure
    with EventLog(pipeline.kafka, pipeline.topics.breaker_events) as governor:
        grants = governor.wait_for(lambda g: (found := g.events(PermitGranted))[len(runs) - 1:] and found, 30)
    assert {g.run_id for g in grants} == set(runs)


def test_a_killed_holders_permit_passes_to_the_calls_next_attempt(pipeline: Pipeline) -> None:
    plan = pipeline.define(LIMITED)
    first = pipeline.worker("w1", {"limited": E2E_TOOLS})
    slow = pipeline.publisher.submit_run(plan, {"seconds": 4.0})
    pipeline.publisher.flush()
    with EventLog(pipeline.kafka, pipeline.topics.breaker_events) as governor:
        governor.wait_for(lambda g: g.events(PermitGranted), 30)
        first.kill()  # SIGKILL while the call holds the only permit
        quick = pipeline.publisher.submit_run(plan, {"seconds": 0.1})
        pipeline.publisher.flush()
        pipeline.worker("w2", {"limited": E2E_TOOLS})
        pipeline.wait(lambda log: {e.run_id for e in log.events(m.RunSucceeded)} >= {slow, quick}, 90)
        grants = governor.wait_for(lambda g: (found := g.events(PermitGranted))[2:] and found, 30)
    handed = [g for g in grants if g.run_id == slow]
    # the next attempt took the dead holder's permit (no new token), instead of waiting out its expiry
    assert [g.token for g in handed] == [True, False] and handed[1].epoch > handed[0].epoch
    assert pipeline.log.events(m.LeaseExpired, slow)
