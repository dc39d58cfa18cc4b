"""The client factory: librdkafka's own log lines stay off stderr unless asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from taskplane.streams.settings import kafka_options_from_env

ROOT = Path(__file__).resolve().parents[2]
# A consumer pointed at a closed port: librdkafka logs its refused connections (%3|...|FAIL|).
UNREACHABLE = """
from taskplane.streams import kafka_clients
reader = kafka_clients.consumer({"bootstrap.servers": "127.0.0.1:9"}, "quiet")
reader.poll(1.5)
reader.close()
"""


def _stderr_of_unreachable_consumer(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "TASKPLANE_KAFKA_DEBUG"}
    done = subprocess.run([sys.executable, "-c", UNREACHABLE], cwd=ROOT, env={**environ, **env},
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stderr


def test_librdkafka_lines_go_to_python_logging_not_stderr() -> None:
    assert "|FAIL|" not in _stderr_of_unreachable_consumer()


def test_taskplane_kafka_debug_puts_them_back_on_stderr() -> None:
    assert "|FAIL|" in _stderr_of_unreachable_consumer(TASKPLANE_KAFKA_DEBUG="1")


def test_kafka_debug_yes_is_not_a_librdkafka_option_but_contexts_are() -> None:
    assert "debug" not in kafka_options_from_env({"TASKPLANE_KAFKA_DEBUG": "1"})
    assert kafka_options_from_env({"TASKPLANE_KAFKA_DEBUG": "cgrp,eos"})["debug"].get_secret_value() == "cgrp,eos"
