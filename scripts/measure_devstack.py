"""Time local Kafka (cold, then warm) and Postgres starts.

Usage: .venv/bin/python scripts/measure_devstack.py [cache_dir]   (empty cache by default)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from taskplane.devstack.kafka import LocalKafka
from taskplane.devstack.postgres import LocalPostgres
from taskplane.streams.settings import DEFAULT_KAFKA_VERSION


def main() -> None:
    given = len(sys.argv) > 1
    cache = Path(sys.argv[1]) if given else Path(tempfile.mkdtemp(prefix="taskplane-cold-"))
    cold = not (cache / f"kafka-{DEFAULT_KAFKA_VERSION}" / ".complete").exists()
    scratch = Path(tempfile.mkdtemp(prefix="taskplane-measure-"))
    try:
        for run in range(3):
            label = "kafka cold" if cold and run == 0 else "kafka warm"
            started = time.monotonic()
            kafka = LocalKafka(scratch / f"kafka{run}", cache_dir=cache, progress=lambda _: None)
            kafka.start()
            ready = time.monotonic() - started
            started = time.monotonic()
            kafka.stop()
            print(f"{label}: start {ready:.1f}s, stop {time.monotonic() - started:.1f}s")
        for run in range(2):
            started = time.monotonic()
            postgres = LocalPostgres(scratch / f"postgres{run}").start()
            fresh = time.monotonic() - started
            postgres.stop()
            started = time.monotonic()
            postgres.start()
            again = time.monotonic() - started
            postgres.stop()
            print(f"postgres: fresh (initdb) {fresh:.1f}s, existing data dir {again:.1f}s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not given:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
