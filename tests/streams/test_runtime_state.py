"""The runtime's states and their transitions (no broker)."""

from __future__ import annotations

import pytest

from taskplane.streams.runtime_state import Event, Lifecycle, Phase, next_phase


@pytest.mark.parametrize(("phase", "event", "expected"), [
    (Phase.STARTING, Event.STARTED, Phase.READY),
    (Phase.STARTING, Event.BROKER_DOWN, Phase.STARTING),
    (Phase.READY, Event.BROKER_DOWN, Phase.AWAY),
    (Phase.READY, Event.TRANSACTION_FAILED, Phase.AWAY),
    (Phase.AWAY, Event.PROBE_ANSWERED, Phase.READY),
    (Phase.AWAY, Event.COMMITTED, Phase.READY),
    (Phase.READY, Event.RESTORE_FAILED, Phase.RESTORE_PENDING),
    (Phase.RESTORE_PENDING, Event.COMMITTED, Phase.RESTORE_PENDING),
    (Phase.RESTORE_PENDING, Event.PROBE_ANSWERED, Phase.RESTORE_PENDING),
    (Phase.RESTORE_PENDING, Event.REWINDING, Phase.AWAY),
    (Phase.AWAY, Event.FATAL, Phase.FAILED),
    (Phase.FAILED, Event.COMMITTED, Phase.FAILED),
    (Phase.FAILED, Event.STOPPED, Phase.STOPPED),
    (Phase.STOPPED, Event.STARTED, Phase.STOPPED),
])
def test_transitions(phase: Phase, event: Event, expected: Phase) -> None:
    assert next_phase(phase, event) is expected


def test_readiness_is_reported_once_per_change() -> None:
    seen: list[bool] = []
    lifecycle = Lifecycle("unit", seen.append)
    for event in (Event.STARTED, Event.COMMITTED, Event.BROKER_DOWN, Event.TRANSACTION_FAILED,
                  Event.PROBE_ANSWERED, Event.STOPPED):
        lifecycle.fire(event)
    assert seen == [True, False, True, False]
    assert not lifecycle.ready()
