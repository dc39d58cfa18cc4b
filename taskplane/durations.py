"""Durations as manifests write them (``250ms``, ``10s``, ``1.5m``, ``1h``, ``30``).

Held as whole milliseconds; a plain number means seconds. ``format_duration`` gives
the one canonical spelling of a value, so ``10s`` and ``10000ms`` compare equal.
"""

from __future__ import annotations

import math
import re

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"(?P<number>-?(?:\d+(?:\.\d*)?|\.\d+))(?P<unit>ms|s|m|h)?")
HINT = "use e.g. 250ms, 10s, 1.5m, 1h, or a number of seconds"


class DurationError(ValueError):
    """A value that is not a duration, or not an acceptable one."""


def parse_duration_ms(value: object) -> int:
    """Return ``value`` in whole milliseconds; raise ``DurationError`` if it is no duration.

    Sign is kept: whether zero or a negative value makes sense is the caller's call.
    """
    if isinstance(value, bool):  # YAML `true` is an int to Python; never a duration
        raise DurationError(f"bad duration {value!r} ({HINT})")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise DurationError(f"bad duration {value!r} ({HINT})")
        return round(seconds * 1_000)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise DurationError(f"bad duration {value!r} ({HINT})")
        unit = match["unit"] or "s"
        return round(float(match["number"]) * _UNIT_MS[unit])
    raise DurationError(f"bad duration {value!r} ({HINT})")


def format_duration(ms: int) -> str:
    """The canonical spelling: the largest unit that divides ``ms`` exactly."""
    if ms == 0:
        return "0s"
    for unit in ("h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"
