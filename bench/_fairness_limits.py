"""Fleet-wide rate limits, measured (issue 27, part 3): worker processes call one tool
whose limit their demand exceeds, on a real broker; how many calls ran in the busiest
window of one rate period, and in the least busy full window while demand lasted.

``measure(...)`` is what ``python -m bench.fairness`` reports; ``python -m
bench._fairness_limits [--quick]`` runs it alone (last line JSON). The full run limits
the tool to 100/min for 4 minutes and reads 60 s windows; ``--quick`` limits it to
60 per 10 s for 30 s and reads 10 s windows (per-minute figures are scaled by 6): a
smoke check. The governor's bucket holds 2 % of the limit (at least 2 calls), which is
1.2 s of calls for 100/min but 0.33 s for 60/10s: decisions further apart than that
lose tokens, so short windows read a little under the limit (docs/scheduling.md).

Calls are timed by the tool itself (wall clock at its start, one host). Windows start
at every call; the least busy one is taken among windows that end before the
measurement does, all while the backlog of runs was never empty."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from taskplane.contract import messages as m
from taskplane.contract.permits import PermitGranted, PermitQueued
from taskplane.processors.breaker.permits import window_bound
from taskplane.rates import format_rate, parse_rate
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import EventLog, ProcessorThreads, WorkerProcess, compile_manifest

AGENTS = str(Path(__file__).resolve().parent / "_limits_agents.py")
MANIFEST = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: limited}}
spec:
  agents:
    - name: caller
      tools:
        - bench.limited: {{timeout: 10s, rateLimit: {rate}}}
  execution: {{leaseTimeout: 10s}}
"""


def windows(starts: list[float], period_s: float, end: float) -> tuple[int, int]:
    """(most, fewest) calls in a window of ``period_s`` starting at a call; the fewest
    among windows that end by ``end``."""
    starts = sorted(starts)
    most, fewest = 0, len(starts)
    ahead = 0
    for index, start in enumerate(starts):
        ahead = max(ahead, index)
        while ahead < len(starts) and starts[ahead] < start + period_s:
            ahead += 1
        count = ahead - index
        most = max(most, count)
        if start + period_s <= end:
            fewest = min(fewest, count)
    return most, fewest


def measure(kafka: dict[str, Any] | None = None, *, quick: bool = False, rate: str | None = None,
            duration_s: float | None = None, workers: int = 4, concurrency: int = 8,
            tick_interval_ms: int = 50) -> dict[str, Any]:
    """Run the measurement against ``kafka`` (a broker config; None: start one)."""
    if kafka is None:
        from bench._stack import bench_stack

        with bench_stack() as started:
            return measure({**started, "log_level": 3}, quick=quick, rate=rate, duration_s=duration_s,
                           workers=workers, concurrency=concurrency, tick_interval_ms=tick_interval_ms)
    limit, period_ms = parse_rate(rate or ("60/10s" if quick else "100/min"))
    duration = duration_s or (30.0 if quick else 240.0)
    topics = Topics(f"benchlimits{uuid.uuid4().hex[:6]}")
    ensure_topics(kafka_clients.admin(kafka), topics, catalog())
    definition = compile_manifest(MANIFEST.format(rate=format_rate(limit, period_ms)))
    publisher = Publisher(kafka, topics)
    publisher.define_system(definition)
    publisher.flush()
    processors = ProcessorThreads(kafka, topics, None, tick_interval_ms=tick_interval_ms).start()
    env = {"TASKPLANE_BOOTSTRAP_SERVERS": kafka["bootstrap.servers"], "TASKPLANE_TOPIC_PREFIX": topics.prefix}
    log_dir = Path(tempfile.mkdtemp(prefix="taskplane-bench-limits-"))
    pool = [WorkerProcess(f"w{i}", {definition.name: AGENTS}, env, log_dir, concurrency).start()
            for i in range(workers)]
    # More runs than the limit lets through in the whole measurement: demand never ends.
    runs = int(limit * duration * 1000 / period_ms * 1.5) + workers * concurrency * 2
    events = EventLog(kafka, topics.events)
    governor = EventLog(kafka, topics.breaker_events)
    try:
        for n in range(runs):
            publisher.submit_run(definition.plan, {"n": n})
        publisher.flush()
        first = events.wait_for(lambda log: log.events(m.ToolCallSucceeded), 120, also=processors.check)
        begun = json.loads(first[0].result)["started"]
        while time.time() < begun + duration + 3:  # the last calls' records reach the log
            processors.check()
            time.sleep(1)
        succeeded = events.events(m.ToolCallSucceeded)
        failed = events.events(m.AttemptFailed)
        grants = [g.granted_ms / 1000 for g in governor.events(PermitGranted) if g.token]
        queued = {(q.request.key, q.request.try_no) for q in governor.events(PermitQueued)}
        # Granted on arrival: the queue was empty, so demand did not exceed the limit then.
        unqueued = [g.granted_ms / 1000 for g in governor.events(PermitGranted)
                    if g.token and (g.key, g.try_no) not in queued]
    finally:
        for worker in pool:
            worker.stop(15)
        processors.stop()
        events.close()
        governor.close()
    starts = [json.loads(e.result)["started"] for e in succeeded]
    end = begun + duration
    starts = [s for s in starts if s < end]
    period_s = period_ms / 1000
    most, fewest = windows(starts, period_s, end)
    # The same windows in log time (the governor's decisions), apart from delivery delays.
    granted_most, granted_fewest = windows([g for g in grants if g < end], period_s, end)
    per_min = 60.0 / period_s
    return {
        "rate_limit": format_rate(limit, period_ms),
        "rate_limit_per_min": round(limit * per_min, 1),
        "observed_calls_per_min_max": round(most * per_min, 1),
        "observed_calls_per_min_min": round(fewest * per_min, 1),
        "window_s": period_s,
        "calls_in_busiest_window": most,
        "calls_in_least_busy_window": fewest,
        "decider_bound_per_window": window_bound(limit),
        "grants_in_busiest_window_log_time": granted_most,
        "grants_in_least_busy_window_log_time": granted_fewest,
        "over_pct": round(100.0 * (most - limit) / limit, 2),
        "under_pct": round(100.0 * (limit - fewest) / limit, 2),
        "calls_measured": len(starts),
        "grants_on_arrival_after_first_window": sum(1 for t in unqueued if begun + period_s <= t < end),
        "measured_s": duration,
        "runs_submitted": runs,
        "attempts_failed": len(failed),
        "workers": workers,
        "worker_concurrency": concurrency,
        "tick_interval_ms": tick_interval_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 per 10 s for 30 s (10 s windows)")
    parser.add_argument("--rate", default=None, help="the tool's rateLimit (default 100/min; --quick 100/10s)")
    parser.add_argument("--duration", type=float, default=None, help="seconds measured (default 240; --quick 30)")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("TASKPLANE_LOG_LEVEL", "WARNING")
    print(json.dumps(measure(quick=args.quick, rate=args.rate, duration_s=args.duration, workers=args.workers)))


if __name__ == "__main__":
    main()
