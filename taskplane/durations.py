"""Durations as manifests write them (``250ms``, ``10s``, ``1.5m``, ``1h``, ``30``).

Held as whole milliseconds; a plain number means seconds. ``format_duration`` gives
the one canonical spelling of a value, so ``10s`` and ``10000ms`` compare equal.
"""

from __future__ import annotations

import math
import re

from taskplane.exceptions import UserInputError

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
# Longer is no duration anyone means, and log time plus it must still fit the Avro longs
# it is stored in (an apply of `99999999999999999999h` validated, then failed to encode).
MAX_MS = 876_000 * 3_600_000  # 100 years
_DURATION = re.compile(r"(?P<number>-?(?:\d+(?:\.\d*)?|\.\d+))(?P<unit>ms|s|m|h)?")
HINT = "use e.g. 250ms, 10s, 1.5m, 1h, or a number of seconds"


class DurationError(UserInputError, ValueError):
    """A value that is not a duration, or not an acceptable one. A ``ValueError`` too,
    so pydantic validators turn it into a field error."""


def parse_duration_ms(value: object) -> int:
    """Return ``value`` in whole milliseconds; raise ``DurationError`` if it is no duration.

    Sign is kept: whether zero or a negative value makes sense is the caller's call.
    More than ``MAX_MS`` either way is refused.
    """
    ms = _ms(value)
    if ms is None:
        raise DurationError(f"bad duration {_shown(value)} ({HINT})")
    if abs(ms) > MAX_MS:
        raise DurationError(f"bad duration {_shown(value)}: longer than {MAX_MS // 3_600_000}h (100 years)")
    return ms


def _ms(value: object) -> int | None:
    if isinstance(value, bool):  # YAML `true` is an int to Python; never a duration
        return None
    number: int | float | str
    if isinstance(value, int | float):
        number, unit = value, "s"
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)) is not None:
        number, unit = match["number"], match["unit"] or "s"
    else:
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None  # .nan, .inf
    try:
        ms = float(number) * _UNIT_MS[unit]
    except OverflowError:  # an int too large for a float
        return MAX_MS + 1
    return MAX_MS + 1 if math.isinf(ms) else round(ms)  # 400 digits are infinity: round() raised


def _shown(value: object) -> str:
    """``repr`` of user input, clipped (an int of 5,000 digits has no repr at all)."""
    try:
        text = repr(value)
    except ValueError:
        return "(a number too long to show)"
    return text if len(text) <= 60 else text[:57] + "..."


def format_duration(ms: int) -> str:
    """The canonical spelling: the largest unit that divides ``ms`` exactly."""
    if ms == 0:
        return "0s"
    for unit in ("h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"
