"""``spec.schedules`` of the manifest: cron schedules that start runs (docs/scheduling.md,
"Cron schedules"). Expressions and zones are checked with the calendar the cron
processor uses, so what validates is what fires."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from taskplane.contract.cron import ScheduleSpec
from taskplane.durations import DurationError, parse_duration_ms
from taskplane.processors.cron.calendar import CronError, next_after, parse_cron, zone

_SCHEDULE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")


def _refuse(kind: str, reason: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{reason}", {"reason": reason})


class ScheduleManifest(BaseModel):
    """One schedule: ``{name, cron, timeZone, input, concurrencyPolicy, startingDeadline}``."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    name: str
    cron: str
    time_zone: str = "UTC"
    input: Any = None
    concurrency_policy: Literal["forbid", "allow", "replace"] = "allow"
    starting_deadline: int | None = None  # ms; the manifest spells it as a duration

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _SCHEDULE_NAME.fullmatch(name):
            raise _refuse("name", f"invalid schedule name {name!r}: lowercase letters, digits, '-' and '.', "
                                  "at most 63, starting and ending with a letter or digit")
        return name

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        try:
            parse_cron(cron)
        except CronError as error:
            raise _refuse("cron", str(error)) from None
        return cron

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            zone(name)
        except CronError as error:
            raise _refuse("time_zone", str(error)) from None
        return name

    @field_validator("input")
    @classmethod
    def _json(cls, value: Any) -> Any:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise _refuse("input", f"not JSON: {error}") from None
        return value

    @field_validator("starting_deadline", mode="before")
    @classmethod
    def _deadline(cls, value: object) -> int | None:
        if value is None:
            return None
        try:
            ms = parse_duration_ms(value)
        except DurationError as error:
            raise _refuse("duration", str(error)) from None
        if ms < 1_000:
            raise _refuse("duration", f"must be at least 1s, got {value!r}")
        return ms

    def never_fires(self) -> bool:
        """An expression no date satisfies (``0 0 30 2 *``)."""
        return next_after(parse_cron(self.cron), zone(self.time_zone), 0) is None

    def to_spec(self) -> ScheduleSpec:
        return ScheduleSpec(self.name, self.cron, self.time_zone, json.dumps(self.input, sort_keys=True),
                            self.concurrency_policy, self.starting_deadline)


def schedule_problems(schedules: tuple[ScheduleManifest, ...]) -> list[tuple[str, str]]:
    """Cross-schedule problems, as (path, reason): repeated names, expressions that never fire."""
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, schedule in enumerate(schedules):
        if schedule.name in seen:
            problems.append((f"spec.schedules[{index}].name", f"duplicate schedule {schedule.name!r}"))
        seen.add(schedule.name)
        if schedule.never_fires():
            problems.append((f"spec.schedules[{index}].cron", f"{schedule.cron!r} never fires"))
    return problems
