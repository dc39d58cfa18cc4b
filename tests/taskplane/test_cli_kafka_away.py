"""Kafka away: a command that reads or lists the log says so in one line (exit 1, the
error retryable), never with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# In the broker lane, not `make check`: each command waits out librdkafka's 30 s metadata
# timeout (at once, so the test takes one of them).
pytestmark = pytest.mark.kafka


def test_commands_that_read_the_log_say_kafka_is_away_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "TASKPLANE_BOOTSTRAP_SERVERS": "127.0.0.1:9", "TASKPLANE_CACHE_DIR": str(tmp_path)}
    commands = {"schedules list": ["schedules", "list"], "schedules pause": ["schedules", "pause", "nightly"],
                "topics create": ["topics", "create"], "verify": ["verify"]}
    running = {name: subprocess.Popen([sys.executable, "-m", "taskplane.cli", *argv], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, argv in commands.items()}
    for name, process in running.items():
        _out, err = process.communicate(timeout=120)
        assert "Traceback" not in err and "KafkaException" not in err, (name, err[-2000:])
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: ") and last.endswith("(retrying may succeed)"), (name, err[-2000:])
        assert process.returncode == 1, (name, err[-2000:])
