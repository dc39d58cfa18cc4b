"""Fair share on the real broker (docs/scheduling.md): a flood of one tenant's runs
waits in the dispatcher, and another tenant's run submitted behind it is released after
at most one quantum of the flood, with at most the window's items ahead of it on `work`.
Every run of both tenants finishes: nothing is stuck in the window."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from taskplane.contract.messages import RunSucceeded, SubmitRun
from taskplane.contract.scheduling import OfferQueued, WorkReleased
from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.processors.dispatch.verify import read_dispatch, verify_dispatch
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.restore import stored_states
from taskplane.streams.serde import Serde
from taskplane.testing import EventLog
from tests.e2e.e2e_pipeline import Pipeline

pytestmark = pytest.mark.kafka

AGENTS = str(Path(__file__).resolve().parent / "_fair_agents.py")
WINDOW = 2
MANIFEST = f"""
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: fair-e2e}}
spec:
  agents:
    - name: step
      tools: [fair.work]
  scheduling:
    tenants: {{a: {{weight: 1}}, b: {{weight: 1}}}}
    window: {WINDOW}
"""
FLOOD = 40


def test_a_flood_of_one_tenant_does_not_hold_back_another(pipeline: Pipeline) -> None:
    plan = pipeline.define(MANIFEST)
    pipeline.worker("w1", {"fair-e2e": AGENTS})
    dispatch_log = EventLog(pipeline.kafka, pipeline.topics.dispatch_events)
    try:
        flood = [uuid.uuid4().hex for _ in range(FLOOD)]
        for run_id in flood:
            pipeline.publisher.publish(SubmitRun(run_id, plan, json.dumps({"seconds": 0.5}), None, "a", 0))
        pipeline.publisher.flush()
        dispatch_log.wait_for(lambda log: len(log.events(OfferQueued)) >= FLOOD, 60)
        small = uuid.uuid4().hex
        pipeline.publisher.publish(SubmitRun(small, plan, json.dumps({"seconds": 0.0}), None, "b", 0))
        pipeline.publisher.flush()
        pipeline.wait(lambda log: log.events(RunSucceeded, small), 60)
        # dispatch-events has its own reader: it may not have read the release yet
        dispatch_log.wait_for(lambda log: [e for e in log.events(WorkReleased) if e.run_id == small], 60)

        decisions = [e for e in dispatch_log.all_events() if isinstance(e, OfferQueued | WorkReleased)]
        queued_at = next(i for i, e in enumerate(decisions) if isinstance(e, OfferQueued) and e.run_id == small)
        released_at = next(i for i, e in enumerate(decisions) if isinstance(e, WorkReleased) and e.run_id == small)
        flood_between = [e for e in decisions[queued_at:released_at] if isinstance(e, WorkReleased)]
        assert len(flood_between) <= 1  # one quantum of tenant a (weight 1) at most
        released_before = sum(1 for e in decisions[:queued_at] if isinstance(e, WorkReleased))
        assert FLOOD - released_before > WINDOW  # a real backlog of tenant a when b's run came

        pipeline.wait(lambda log: len({e.run_id for e in log.events(RunSucceeded)} & set(flood)) == FLOOD, 120)
    finally:
        dispatch_log.close()

    # taskplane verify --processor dispatcher: the offers and notices on `dispatch` decided
    # again give the same events, and the state is their fold
    verdict = verify_dispatch(read_dispatch(pipeline.kafka, pipeline.topics))
    assert verdict.total("decisions") >= 2 * FLOOD and not verdict.divergences, verdict.divergences[:3]
    serde = Serde()
    events = [serde.decode(v)[1] for _p, _k, v in read_to_end(pipeline.kafka, pipeline.topics.dispatch_events) if v]
    folded: object = None
    for event in events:
        folded = DispatchDecider().evolve(folded, event)
    values: dict[str, bytes] = {}  # the changelog compacted: a head and a record per offer
    for _p, key, value in read_to_end(pipeline.kafka, pipeline.topics.dispatcher_changelog):
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    assert folded is not None and stored_states(DispatchDecider(), serde, values)["fair-e2e"] == folded
