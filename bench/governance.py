"""Governance on the real broker: budgets, blocked tools and (when its module is there)
approvals, with 4 real worker processes and many runs in parallel.

    python -m bench.governance [--quick]

Each part is a module with ``measure(kafka: dict, quick: bool) -> dict`` that builds
its own stack on the broker given (``bench/_governance_stack.py``) and returns its
figures: ``bench/_governance_budget.py`` (budget_overshoot_calls_max, blocked_calls)
and ``bench/_governance_approvals.py`` when present. Last line: one JSON object with
every part's figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from typing import Any

from bench._stack import bench_stack

PARTS = ("bench._governance_budget", "bench._governance_approvals")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs: under a minute")
    args = parser.parse_args()
    figures: dict[str, Any] = {"quick": args.quick}
    started = time.monotonic()
    with bench_stack() as kafka:
        for name in PARTS:
            try:
                part = importlib.import_module(name)
            except ModuleNotFoundError as missing:
                if missing.name != name:
                    raise
                print(f"{name}: not there, skipped", flush=True)
                continue
            print(f"{name.rpartition('.')[2].removeprefix('_governance_')}:", flush=True)
            figures.update(part.measure({**kafka, "log_level": 3}, args.quick))
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
