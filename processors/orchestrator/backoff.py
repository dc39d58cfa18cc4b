"""The retry schedule: capped exponential backoff with deterministic jitter.

Jitter comes from a hash of (run, task, failure number), never from a random
generator, so a replay of the log schedules every retry at the same time.
"""

from __future__ import annotations

import hashlib

from taskplane.contract.plan import ExecutionPolicy


def unit_jitter(run_id: str, task: str, failure: int) -> float:
    """A number in [-1, 1], the same for the same (run, task, failure)."""
    digest = hashlib.sha256(f"{run_id}/{task}/{failure}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / float(2**64 - 1)
    return 2.0 * fraction - 1.0


def base_backoff_ms(policy: ExecutionPolicy, failure: int) -> float:
    """Backoff before the retry that follows the ``failure``-th counted failure
    (1-based), capped, without jitter."""
    exponent = max(failure, 1) - 1
    capped = float(policy.max_backoff_ms)
    delay = float(policy.initial_backoff_ms)
    for _ in range(exponent):  # a loop, not **, so a long series never overflows a float
        delay *= policy.backoff_multiplier
        if delay >= capped:
            return capped
    return min(delay, capped)


def backoff_ms(policy: ExecutionPolicy, run_id: str, task: str, failure: int) -> int:
    """``base_backoff_ms`` times (1 + jitter_fraction * u), u in [-1, 1] from the hash."""
    jitter = 1.0 + policy.jitter_fraction * unit_jitter(run_id, task, failure)
    return max(0, round(base_backoff_ms(policy, failure) * jitter))
