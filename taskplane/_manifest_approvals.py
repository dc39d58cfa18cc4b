"""Per-tool governance in the manifest: ``approval`` and ``operation``.

    tools:
      - payments.charge: {approval: required, operation: write}
      - email.send: {approval: {required: true, ttl: 30m}, operation: write}

``approval: required`` (or ``true``) makes a call wait for a person's grant, for at most
``ttl`` (default 10 minutes) before the task fails ``approval_timeout``. ``operation``
names the tool's class as Orloj's ``ToolPermission`` does. Both compile into the
``ToolPlan``; docs/governance.md, "Approvals".
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator
from pydantic_core import PydanticCustomError

from taskplane.durations import DurationError, format_duration, parse_duration_ms

DEFAULT_TTL_MS = 600_000
_UNSET_WHEN_NONE = ("approval", "operation")  # absent from the canonical form when unset


class Operation(str, Enum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    ADMIN = "admin"


def _ttl(value: object) -> int:
    try:
        ms = parse_duration_ms(value)
    except DurationError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None
    if ms < 1_000:
        raise PydanticCustomError("duration", "{reason}", {"reason": f"must be at least 1s, got {value!r}"})
    return ms


Ttl = Annotated[int, BeforeValidator(_ttl), PlainSerializer(format_duration, return_type=str)]


class ApprovalSpec(BaseModel):
    """``required`` (a string or ``true``) or ``{required: bool, ttl: duration}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: bool = True
    ttl: Ttl = DEFAULT_TTL_MS

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: object) -> object:
        if data == "required" or data is True:
            return {"required": True}
        if data is False or data == "none":
            return {"required": False}
        if isinstance(data, Mapping):
            return data
        raise PydanticCustomError("approval", "{reason}", {
            "reason": f"approval is `required`, `none` or {{required: true, ttl: 10m}}, got {data!r}"})


ApprovalField = Annotated[ApprovalSpec | None, Field(default=None)]
OperationField = Annotated[Operation | None, Field(default=None)]


def approval_plan(approval: ApprovalSpec | None, operation: Operation | None) -> dict[str, Any]:
    """The ``ToolPlan`` fields these compile to."""
    required = approval is not None and approval.required
    return {"approval_required": required,
            "approval_ttl_ms": approval.ttl if approval is not None else DEFAULT_TTL_MS,
            "operation": operation.value if operation is not None else ""}


def drop_unset(data: dict[str, Any]) -> None:
    """Tools without ``approval``/``operation`` keep the canonical form (and so the system
    version) they had before these fields existed."""
    for agent in data.get("spec", {}).get("agents", []):
        for tool in agent.get("tools", []):
            for name in _UNSET_WHEN_NONE:
                if tool.get(name) is None:
                    tool.pop(name, None)
