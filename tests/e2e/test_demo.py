"""``taskplane demo`` exits 0 against the session's broker and Postgres (a smaller
batch than the default, so it stays well under a minute once the stack is up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]


def test_taskplane_demo_exits_0_and_prints_its_summary(kafka_bootstrap: str, database_url: str) -> None:
    env = {**os.environ, "TASKPLANE_BOOTSTRAP_SERVERS": kafka_bootstrap, "TASKPLANE_DATABASE_URL": database_url}
    done = subprocess.run([sys.executable, "-m", "taskplane.cli", "demo", "--runs", "8", "--timeout", "90"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    assert "runs succeeded         18/18" in out
    assert "duplicate charges 0" in out
    assert "dead letters           1, replayed 1" in out
    assert "SIGKILL" in out and "takeover" in out
    assert "taskplane approvals approve" in out and ": granted by demo-operator" in out
    assert "refund.issue ran once after it" in out
    assert "stopped: budget_exceeded after" in out and "the run failed budget_exceeded" in out
    assert "OK: every run ended as expected" in out
