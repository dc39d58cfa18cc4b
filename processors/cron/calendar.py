"""Cron expressions and their slots in a time zone: the calendar the cron processor's
hints consult (``processors/cron/app.py``) and the manifest validates with.

Not a decider: it reads the tz database (``zoneinfo``), whose rules change between
releases, so what it answers reaches the decider as a recorded input (``SlotsDue``,
``SchedulesApplied``, ``ScheduleResumed``) and a replay decides with the same slots.

Five fields (minute hour day-of-month month day-of-week), or six with seconds first
(as Quartz and robfig/cron spell it), with ``*``, lists, ranges, steps, month and day
names, and the macros ``@hourly @daily @midnight @weekly
@monthly @yearly @annually``. When both day fields are restricted a day matching
either fires (Vixie cron). Slots are local wall times: one the zone skips (spring
forward) does not fire, one it repeats (fall back) fires once, at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskplane.contract.errors import TaskplaneError

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_MONTHS = {n: i + 1 for i, n in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, low, high, names) per field
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))
_HORIZON_DAYS = 366 * 8 + 2  # a Feb 29 on a Monday recurs within 28 years; 8 covers any Feb 29


class CronError(TaskplaneError, ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class CronExpr:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_restricted: bool
    weekday_restricted: bool

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return in_month or in_week
        return in_month and in_week


def parse_cron(text: str) -> CronExpr:
    """The expression ``text``; ``CronError`` naming the bad part."""
    if not isinstance(text, str):
        raise CronError(f"a cron expression is a string, got {type(text).__name__}")
    spelled = MACROS.get(text.strip().lower(), text)
    parts = spelled.split()
    if len(parts) not in (5, 6):
        raise CronError(f"{text!r}: expected 5 fields (minute hour day-of-month month day-of-week), 6 with "
                        f"seconds first, or a macro ({', '.join(sorted(MACROS))}); got {len(parts)}")
    seconds = _field(parts.pop(0), "second", 0, 59, {}) if len(parts) == 6 else {0}
    values = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in values[4])  # 7 is Sunday too
    expr = CronExpr(tuple(sorted(seconds)), tuple(sorted(values[0])), tuple(sorted(values[1])), frozenset(values[2]),
                    frozenset(values[3]), weekdays, not parts[2].startswith("*"), not parts[4].startswith("*"))
    return expr


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``UTC``, ``Europe/Paris``); ``CronError`` when unknown."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise CronError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {name!r} (an IANA name such as 'UTC' or 'Europe/Paris')") from None


def slots_after(expr: CronExpr, tz: ZoneInfo, after_ms: int) -> Iterator[int]:
    """Every slot strictly after ``after_ms`` (epoch ms), ascending, as epoch ms; ends
    when none comes within ``_HORIZON_DAYS`` (an expression such as Feb 30)."""
    start = datetime.fromtimestamp(after_ms / 1000, UTC).astimezone(tz)
    day = start.date()
    for _ in range(_HORIZON_DAYS):
        if expr.day_matches(day):
            for hour in expr.hours:
                for minute in expr.minutes:
                    at = _instant_ms(day, hour, minute, tz)
                    if at is None or at + 59_000 <= after_ms:
                        continue
                    for second in expr.seconds:
                        if at + second * 1000 > after_ms:
                            yield at + second * 1000
        day += timedelta(days=1)


def next_after(expr: CronExpr, tz: ZoneInfo, after_ms: int) -> int | None:
    """The first slot strictly after ``after_ms``; None when there is none."""
    return next(slots_after(expr, tz, after_ms), None)


def due_slots(expr: CronExpr, tz: ZoneInfo, first_ms: int, until_ms: int,
              cap: int) -> tuple[tuple[int, ...], int, int | None]:
    """Slots in ``[first_ms, until_ms]``: the latest ``cap`` of them, how many earlier
    ones were left out, and the first slot after ``until_ms``."""
    kept: list[int] = []
    dropped = 0
    for at in slots_after(expr, tz, first_ms - 1):
        if at > until_ms:
            return tuple(kept), dropped, at
        kept.append(at)
        if len(kept) > cap:
            kept.pop(0)
            dropped += 1
    return tuple(kept), dropped, None


def _instant_ms(day: date, hour: int, minute: int, tz: ZoneInfo) -> int | None:
    """The wall time as epoch ms; None when the zone skips it (a DST gap). Of a
    repeated wall time, ``fold=0`` is the first occurrence."""
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
    instant = local.astimezone(UTC)
    back = instant.astimezone(tz)
    if (back.hour, back.minute) != (hour, minute):
        return None
    return int(instant.timestamp() * 1000)


def _field(part: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    found: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: bad step {step_text!r} in {part!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high if name != "day of week" else 6
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _value(a, name, low, high, names), _value(b, name, low, high, names)
            if first > last:
                raise CronError(f"{name}: range {base!r} runs backwards")
        else:
            first = _value(base, name, low, high, names)
            last = high if step_text else first
        found.update(range(first, last + 1, step))
    return found


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number" + (f" or a name ({', '.join(names)})" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is out of range {low}-{high}")
    return value
