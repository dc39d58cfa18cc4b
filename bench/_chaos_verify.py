"""The end of bench.chaos: ``taskplane verify`` of every processor's log after the kills
(docs/verify.md). Each decision of the orchestrator, the dispatcher, the cron processor
and the tool governor, however many times its processor was SIGKILLed or its broker
went away, must come out the same from the installed decider, and each changelog must
be the fold of its events (what a restart restored). Read while the processors still
run: the undecided tail and the keys changing meanwhile are left out (docs/verify.md)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from taskplane.processors.recorded import read_cluster, write_fixture
from taskplane.processors.verifying import PROCESSORS, verifiable, verify_processor


def verify_all(stack: Any, failures: list[str]) -> dict[str, dict[str, int]]:
    """Per processor: decisions re-decided, diverged keys, states compared, states that
    differ (and seconds taken); each divergence or difference is a failure."""
    report: dict[str, dict[str, int]] = {}
    for name in PROCESSORS:
        spec = verifiable(name)
        started = time.monotonic()
        with _configured_as(stack.env):  # the orchestrator's approval key and retention, as an operator runs it
            recorded = read_cluster(stack.kafka, stack.topics, spec.roles)
            verdict = verify_processor(spec, recorded)
        report[name] = {"decisions": verdict.total("decisions"), "diverged": len(verdict.divergences),
                        "states_compared": verdict.states_compared,
                        "state_mismatches": len(verdict.state_mismatches),
                        "seconds": round(time.monotonic() - started)}
        first = verdict.first
        if first is not None:
            # The log as read, for `taskplane verify --processor NAME FILE` once the stack is gone.
            kept = Path(tempfile.mkstemp(prefix=f"taskplane-chaos-{name}-", suffix=".log")[1])
            write_fixture(kept, recorded)
            failures.append(f"verify {name}: {len(verdict.divergences)} {spec.noun}s diverged; first "
                            f"{first.key!r} at offset {first.command.offset if first.command else None}: "
                            f"recorded {first.expected!r}, re-decided {first.actual!r} (log kept: {kept})")
        for mismatch in verdict.state_mismatches[:3]:
            failures.append(f"verify {name}: {spec.noun} {mismatch.key!r}'s changelog state is not the fold "
                            f"of its events")
    return report


@contextlib.contextmanager
def _configured_as(env: Mapping[str, str]) -> Iterator[None]:
    """The processors' own settings in this process's environment meanwhile."""
    wanted = {k: v for k, v in env.items() if k.startswith("TASKPLANE_ORCHESTRATOR_") or k == "TASKPLANE_APPROVAL_KEY"}
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
