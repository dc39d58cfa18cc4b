"""``taskplane simulate``'s speed, with the pure decider's in-process rate side by side.

- ``transitions_per_s``: simulated transitions (orchestrator and breaker events) per wall
  second, on the payment example with every fault on; ``decider_commands_per_s`` is
  ``bench.orchestrator``'s in-process rate measured in the same run, and
  ``transitions_vs_decider`` the ratio (target >= 0.5), ``..._cpu`` the ratio of both
  per CPU second.
- ``virtual_to_wall``: virtual seconds per wall second on the document pipeline with
  tool errors and timeouts (retries and their backoff).
- ``seconds_per_seed_100_runs``: 100 payment runs a seed, every fault on (target: 100
  seeds in <= 60 s); ``cpu_seconds_per_seed_100_runs`` the same in CPU time (the host is
  shared: wall time includes other processes' turns).
- ``naive_caught_at_seed``: the first seed at which the charge tool that ignores its
  idempotency key breaks ``one charge per order`` (target: within 20).

    python -m bench.simulate [--quick] [--seeds N]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.orchestrator import document_pipeline, inprocess
from taskplane.testing import simulate

ROOT = Path(__file__).resolve().parent.parent
PAYMENTS = ROOT / "examples" / "payment-processor"
DOCUMENTS = ROOT / "examples" / "document-pipeline"
NAIVE = ROOT / "tests" / "testing" / "naive_payment_tools.py"


def _timed(**options: object) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    report = simulate(**options)  # type: ignore[arg-type]
    return report, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 seeds, for smoke checks")
    parser.add_argument("--seeds", type=int, default=100, help="payment seeds of 100 runs (default 100)")
    args = parser.parse_args()
    seeds = 10 if args.quick else args.seeds

    cpu_started = time.process_time()
    decider_rate, decided = inprocess(document_pipeline(), 500 if args.quick else 3_000)
    decider_cpu_rate = decided / (time.process_time() - cpu_started)
    print(f"decider in process: {decider_rate:,.0f} commands/s wall, {decider_cpu_rate:,.0f} per CPU s", flush=True)

    payments, wall, cpu = _timed(manifest=PAYMENTS / "system.yaml", module=str(PAYMENTS / "tools.py"),
                                 inputs=PAYMENTS / "runs.jsonl", runs=100, seeds=seeds)
    assert payments.ok, "the idempotent payment example broke an invariant"  # type: ignore[attr-defined]
    transitions = payments.events + payments.breaker_events  # type: ignore[attr-defined]
    print(f"payments: {seeds} seeds x 100 runs, all faults: {wall:.1f} s wall, {cpu:.1f} s CPU, "
          f"{transitions:,} transitions", flush=True)

    documents, doc_wall, _ = _timed(manifest=DOCUMENTS / "system.yaml", module=str(DOCUMENTS / "tools.py"),
                                    inputs=DOCUMENTS / "runs.jsonl", runs=50, seeds=3 if args.quick else 10,
                                    faults="tool-error=0.2,tool-timeout=0.05")
    assert documents.ok, "the document pipeline broke an invariant"  # type: ignore[attr-defined]
    virtual_s = documents.virtual_ms / 1000  # type: ignore[attr-defined]
    print(f"documents: {virtual_s:,.0f} s virtual in {doc_wall:.1f} s wall", flush=True)

    naive, naive_wall, _ = _timed(manifest=PAYMENTS / "system.yaml", module=str(NAIVE),
                                  inputs=PAYMENTS / "runs.jsonl", runs=100, seeds=20, shrink=False)
    caught = naive.failure.seed if naive.failure is not None else None  # type: ignore[attr-defined]
    print(f"naive charge: caught at seed {caught}", flush=True)

    rate = transitions / wall
    print(json.dumps({
        "transitions_per_s": round(rate),
        "decider_commands_per_s": round(decider_rate),
        "transitions_vs_decider": round(rate / decider_rate, 2),
        # the same ratio in CPU time: on a shared host, wall time is mostly other processes' turns
        "transitions_vs_decider_cpu": round(transitions / cpu / decider_cpu_rate, 2),
        "virtual_to_wall": round(virtual_s / doc_wall, 1),
        "seconds_per_seed_100_runs": round(wall / seeds, 3),
        "cpu_seconds_per_seed_100_runs": round(cpu / seeds, 3),
        "seeds": seeds,
        "naive_caught_at_seed": caught,
    }))


if __name__ == "__main__":
    main()
