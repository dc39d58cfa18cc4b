"""``spec.scheduling`` of the manifest: tenants' weights and caps, priority aging and
the dispatcher's window (docs/scheduling.md). Compiles to ``SchedulingPolicy``.

    scheduling:
      tenants:
        acme: {weight: 3, maxConcurrent: 50}
        small: {weight: 1}
      defaultWeight: 1
      priorityAging: 30s
      window: 32
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from taskplane._manifest_yaml import MAX_COUNT
from taskplane.contract.scheduling import SchedulingPolicy, TenantShare, tenant_problem
from taskplane.durations import DurationError, format_duration, parse_duration_ms

MAX_WEIGHT = 1_000


def _duration(minimum_ms: int) -> BeforeValidator:
    def validate(value: object) -> int:
        try:
            ms = parse_duration_ms(value)
        except DurationError as exc:
            raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None
        if ms < minimum_ms:
            raise PydanticCustomError("duration", "{reason}",
                                      {"reason": f"must be at least {format_duration(minimum_ms)}, got {value!r}"})
        return ms

    return BeforeValidator(validate)


_AS_TEXT = PlainSerializer(format_duration, return_type=str)
Aging = Annotated[int, _duration(0), _AS_TEXT]
Timeout = Annotated[int, _duration(1_000), _AS_TEXT]
Weight = Annotated[int, Strict(), Field(ge=1, le=MAX_WEIGHT)]
Cap = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNT)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class TenantSpec(_Spec):
    weight: Weight = 1
    max_concurrent: Cap = 0  # 0: no cap


class SchedulingSpec(_Spec):
    tenants: dict[str, TenantSpec] = Field(default_factory=dict)
    default_weight: Weight = 1
    default_max_concurrent: Cap = 0
    priority_aging: Aging = 30_000  # 0: no aging
    window: Annotated[int, Strict(), Field(ge=1, le=10_000)] = 32
    release_timeout: Timeout = 60_000

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, tenants: dict[str, TenantSpec]) -> dict[str, TenantSpec]:
        for name in tenants:
            if (problem := tenant_problem(name)) is not None or not name:
                raise PydanticCustomError("tenant", "{reason}", {"reason": problem or "a tenant needs a name"})
        return tenants

    def to_policy(self) -> SchedulingPolicy:
        shares = tuple(TenantShare(name, spec.weight, spec.max_concurrent)
                       for name, spec in sorted(self.tenants.items()))
        return SchedulingPolicy(shares, self.default_weight, self.default_max_concurrent, self.priority_aging,
                                self.window, self.release_timeout)
