"""Rates as manifests write them: ``100/min``, ``5/s``, ``2000/h``, or per any duration
(``10/10s``). Held as (calls, period in milliseconds); ``format_rate`` gives the one
canonical spelling, so ``60/min`` and ``60/1m`` compare equal."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from taskplane.durations import DurationError, parse_duration_ms
from taskplane.exceptions import Problem, UserInputError

_UNITS_MS = {"s": 1_000, "sec": 1_000, "min": 60_000, "m": 60_000, "h": 3_600_000, "hour": 3_600_000}
_RATE = re.compile(r"\s*(?P<calls>\d+)\s*/\s*(?P<per>\S+)\s*")
HINT = "use e.g. 100/min, 5/s, 2000/h or 10/10s"
MAX_CALLS = 1_000_000


class RateError(UserInputError, ValueError):
    """Not a rate. A ``ValueError`` too, so pydantic validators turn it into a field error."""


def parse_rate(value: object) -> tuple[int, int]:
    """``value`` as (calls, period_ms), both positive; raise ``RateError`` otherwise."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise RateError(f"bad rate {value!r} ({HINT})")
    digits, per = match["calls"], match["per"]
    calls = int(digits) if len(digits) <= 18 else MAX_CALLS + 1  # int() of 5,000 digits raises
    if per in _UNITS_MS:
        period = _UNITS_MS[per]
    else:
        try:
            period = parse_duration_ms(per)
        except DurationError:
            raise RateError(f"bad rate {value!r}: unknown period {per!r} ({HINT})") from None
    if calls < 1 or period < 1:
        raise RateError(f"bad rate {value!r}: calls and period must be positive")
    if calls > MAX_CALLS:  # beyond any quota; the governor's bucket holds calls x period in a long
        raise RateError(f"bad rate {value!r}: at most {MAX_CALLS} calls per period")
    return calls, period


def format_rate(calls: int, period_ms: int) -> str:
    for unit, ms in (("h", 3_600_000), ("min", 60_000), ("s", 1_000)):
        if period_ms == ms:
            return f"{calls}/{unit}"
    return f"{calls}/{period_ms}ms" if period_ms % 1_000 else f"{calls}/{period_ms // 1_000}s"


def limit_problems(agents: Sequence[Any]) -> list[Problem]:
    """A tool's limits are fleet-wide: every agent of the system that declares the tool
    declares the same ``rateLimit`` and ``concurrency`` (an agent without them would call
    it past the limit; two different ones would take turns being the limit)."""
    first: dict[str, tuple[str, tuple[Any, Any]]] = {}
    problems: list[Problem] = []
    for index, agent in enumerate(agents):
        for tool_index, tool in enumerate(agent.tools):
            limits = (tool.rate_limit, tool.concurrency)
            where = f"spec.agents[{index}].tools[{tool_index}].{tool.name}"
            seen = first.setdefault(tool.name, (where, limits))
            if seen[1] != limits:
                problems.append(Problem(where, f"limits differ from {seen[0]} ({_spelled(seen[1])}); a tool's "
                                               "rateLimit and concurrency are fleet-wide: declare the same in "
                                               "every agent"))
    return problems


def _spelled(limits: tuple[Any, Any]) -> str:
    rate, concurrency = limits
    parts = ([f"rateLimit {format_rate(*rate)}"] if rate else []) + ([f"concurrency {concurrency}"] if concurrency else [])
    return ", ".join(parts) or "no limits"
