"""Rates as manifests write them: ``100/min``, ``5/s``, ``2000/h``, or per any duration
(``10/10s``). Held as (calls, period in milliseconds); ``format_rate`` gives the one
canonical spelling, so ``60/min`` and ``60/1m`` compare equal."""

from __future__ import annotations

import re

from taskplane.durations import DurationError, parse_duration_ms
from taskplane.exceptions import UserInputError

_UNITS_MS = {"s": 1_000, "sec": 1_000, "min": 60_000, "m": 60_000, "h": 3_600_000, "hour": 3_600_000}
_RATE = re.compile(r"\s*(?P<calls>\d+)\s*/\s*(?P<per>\S+)\s*")
HINT = "use e.g. 100/min, 5/s, 2000/h or 10/10s"


class RateError(UserInputError, ValueError):
    """Not a rate. A ``ValueError`` too, so pydantic validators turn it into a field error."""


def parse_rate(value: object) -> tuple[int, int]:
    """``value`` as (calls, period_ms), both positive; raise ``RateError`` otherwise."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise RateError(f"bad rate {value!r} ({HINT})")
    calls, per = int(match["calls"]), match["per"]
    if per in _UNITS_MS:
        period = _UNITS_MS[per]
    else:
        try:
            period = parse_duration_ms(per)
        except DurationError:
            raise RateError(f"bad rate {value!r}: unknown period {per!r} ({HINT})") from None
    if calls < 1 or period < 1:
        raise RateError(f"bad rate {value!r}: calls and period must be positive")
    return calls, period


def format_rate(calls: int, period_ms: int) -> str:
    for unit, ms in (("h", 3_600_000), ("min", 60_000), ("s", 1_000)):
        if period_ms == ms:
            return f"{calls}/{unit}"
    return f"{calls}/{period_ms}ms" if period_ms % 1_000 else f"{calls}/{period_ms // 1_000}s"
