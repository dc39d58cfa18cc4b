"""A processor's own runtime defaults (the breaker's linger, the dispatcher's) apply only
where neither the environment nor the caller set the field."""

from __future__ import annotations

import pytest

from taskplane.processors.breaker.app import BREAKER_LINGER_MS, BREAKER_TICK_INTERVAL_MS
from taskplane.streams.runtime_settings import RuntimeSettings


def test_a_default_fills_only_what_nobody_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKPLANE_RUNTIME_LINGER_MS", raising=False)
    plain = RuntimeSettings().defaulting(linger_ms=BREAKER_LINGER_MS, tick_interval_ms=BREAKER_TICK_INTERVAL_MS)
    assert (plain.linger_ms, plain.tick_interval_ms) == (BREAKER_LINGER_MS, BREAKER_TICK_INTERVAL_MS)
    assert RuntimeSettings(linger_ms=7).defaulting(linger_ms=BREAKER_LINGER_MS).linger_ms == 7
    monkeypatch.setenv("TASKPLANE_RUNTIME_LINGER_MS", "9")
    assert RuntimeSettings().defaulting(linger_ms=BREAKER_LINGER_MS).linger_ms == 9
    unchanged = RuntimeSettings(linger_ms=1)
    assert unchanged.defaulting(linger_ms=5) is unchanged
