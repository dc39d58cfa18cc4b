"""The AgentSystem manifest: loading, validation, and compiling to a ``SystemPlan``.

The seeds' YAML is accepted as written (``apiVersion: orloj.dev/v1`` included).
Anything wrong is refused as one ``ManifestError`` listing every problem as
``path: reason``, with paths in the manifest's own spelling
(``spec.agents[0].tools[1].web.search.timeout``). Durations are held in milliseconds.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError

from taskplane._manifest_approvals import ApprovalField, OperationField, approval_plan, drop_unset
from taskplane._manifest_graph import graph_problems, topological_order
from taskplane._manifest_policy import PolicySpec
from taskplane._manifest_schedules import ScheduleManifest, schedule_problems
from taskplane._manifest_scheduling import SchedulingSpec, TenantSpec
from taskplane._manifest_yaml import MAX_BYTES, MAX_COUNT, ROOT, parse_yaml
from taskplane.contract.plan import (
    AgentPlan,
    ExecutionPolicy,
    Isolation,
    SystemPlan,
    ToolPlan,
)
from taskplane.durations import DurationError, format_duration, parse_duration_ms
from taskplane.exceptions import ManifestError, Problem, UserInputError
from taskplane.rates import RateError, format_rate, limit_problems, parse_rate

API_VERSIONS = ("taskplane.dev/v1", "orloj.dev/v1")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_AGENT_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}")


def _refuse(kind: str, reason: str) -> PydanticCustomError:
    """An error whose message is ``reason`` verbatim (pydantic would format braces in it)."""
    return PydanticCustomError(kind, "{reason}", {"reason": reason})


def _duration_validator(minimum_ms: int, too_small: str) -> BeforeValidator:
    def validate(value: object) -> int:
        try:
            ms = parse_duration_ms(value)
        except DurationError as exc:
            raise _refuse("duration", str(exc)) from None
        if ms < minimum_ms:
            reason = f"{too_small}, got {value!r}"
            raise _refuse("duration", reason)
        return ms

    return BeforeValidator(validate)


def _name_validator(pattern: re.Pattern[str], rule: str) -> BeforeValidator:
    def validate(value: object) -> object:
        if isinstance(value, str) and not pattern.fullmatch(value):
            reason = f"invalid name {value!r}: {rule}"
            raise _refuse("name", reason)
        return value

    return BeforeValidator(validate)


_AS_TEXT = PlainSerializer(format_duration, return_type=str)


def _rate(value: object) -> tuple[int, int]:
    try:
        return parse_rate(value)
    except RateError as exc:
        raise _refuse("rate", str(exc)) from None


Rate = Annotated[tuple[int, int], BeforeValidator(_rate),
                 PlainSerializer(lambda rate: format_rate(*rate), return_type=str)]
PositiveDuration = Annotated[int, _duration_validator(1, "must be positive"), _AS_TEXT]
NonNegativeDuration = Annotated[int, _duration_validator(0, "must not be negative"), _AS_TEXT]
LeaseDuration = Annotated[int, _duration_validator(1_000, "must be at least 1s"), _AS_TEXT]
Count = Annotated[int, Strict(), Field(le=MAX_COUNT)]
Ratio = Annotated[float, Strict()]
SystemName = Annotated[
    str,
    _name_validator(
        _DNS_LABEL,
        "lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit",
    ),
]
AgentName = Annotated[
    str,
    _name_validator(
        _AGENT_NAME,
        "letters, digits, '.', '_' and '-', at most 63, starting and ending with a letter or digit",
    ),
]
ToolName = Annotated[
    str, _name_validator(_TOOL_NAME, "letters, digits, '.', '_', ':', '/' and '-'")
]


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ToolSpec(_Spec):
    """One tool of an agent: ``- email.fetch`` or ``- web.search: {timeout: 5s, ...}``."""

    name: ToolName
    timeout: PositiveDuration = 30_000
    retries: Count = Field(default=0, ge=0)
    isolation: Isolation = Isolation.NONE
    fallback: ToolName | None = None
    failure_threshold: Count | None = Field(default=None, ge=1)
    cooldown: PositiveDuration | None = None
    network: bool = False
    approval: ApprovalField = None  # a person grants each call first (_manifest_approvals.py)
    operation: OperationField = None
    rate_limit: Rate | None = None  # fleet-wide, decided by the tool governor (docs/scheduling.md)
    concurrency: Count | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _short_and_long_forms(cls, data: object) -> object:
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, Mapping) and "name" not in data:
            if len(data) != 1:
                reason = "a tool is a name or a one-key mapping {name: {options}}"
                raise _refuse("tool_form", reason)
            ((name, options),) = data.items()
            if options is None:
                return {"name": name}
            if not isinstance(options, Mapping):
                raise _refuse("tool_form", f"options of tool {name!r} must be a mapping")
            return {"name": name, **options}
        return data

    @field_validator("fallback")
    @classmethod
    def _not_itself(cls, fallback: str | None, info: ValidationInfo) -> str | None:
        if fallback is not None and fallback == info.data.get("name"):
            raise _refuse("fallback", "a tool cannot be its own fallback")
        return fallback

    @field_validator("network")
    @classmethod
    def _network_needs_container(cls, network: bool, info: ValidationInfo) -> bool:
        isolation = info.data.get("isolation")  # absent when isolation itself was refused
        if network and isolation is not None and isolation is not Isolation.CONTAINER:
            reason = f"network access needs isolation: container, not {isolation.value}"
            raise _refuse("network", reason)
        return network


class AgentSpec(_Spec):
    name: AgentName
    model: str | None = None  # opaque to taskplane; handed to the agent's code
    tools: tuple[ToolSpec, ...] = ()
    dependencies: tuple[AgentName, ...] = ()


class ExecutionSpec(_Spec):
    lease_timeout: LeaseDuration = 10_000
    max_retries: Count = Field(default=3, ge=0)
    initial_backoff: NonNegativeDuration = 1_000
    backoff_multiplier: Ratio = Field(default=2.0, ge=1.0)
    max_backoff_cap: PositiveDuration = 60_000
    jitter_fraction: Ratio = Field(default=0.1, ge=0.0, le=1.0)
    dead_letter_transition: bool = True
    idempotency_tracking: bool = True
    state_persistence: bool = True
    finished_run_retention: NonNegativeDuration | None = None  # None: the orchestrator's default (1h)

    @field_validator("state_persistence")
    @classmethod
    def _always_persisted(cls, persisted: bool) -> bool:
        if not persisted:  # nothing could honour false: refuse it rather than ignore it
            raise _refuse("state_persistence", "state is always persisted (the Kafka log is the system of record)")
        return persisted

    @field_validator("max_backoff_cap")
    @classmethod
    def _cap_above_initial(cls, cap: int, info: ValidationInfo) -> int:
        initial = info.data.get("initial_backoff")
        if isinstance(initial, int) and cap < initial:
            reason = f"must be at least initialBackoff ({format_duration(initial)}), got {format_duration(cap)}"
            raise _refuse("backoff_cap", reason)
        return cap


class BreakersSpec(_Spec):
    failure_threshold: Count = Field(default=5, ge=1)
    cooldown: PositiveDuration = 60_000


class ObservabilitySpec(_Spec):
    """Metrics and alerts belong to the deployment (TASKPLANE_METRICS_PORT, the rules in
    deploy/), not to one system: the seeds' values are accepted, others refused, so a
    manifest never asks for something that nothing does."""

    metrics_export: Literal["prometheus"] = "prometheus"
    lease_renewal_metrics: bool = True
    task_state_change_metrics: bool = True
    dead_letter_alerts: bool = True

    @field_validator("lease_renewal_metrics", "task_state_change_metrics", "dead_letter_alerts")
    @classmethod
    def _per_deployment(cls, enabled: bool) -> bool:
        if not enabled:
            reason = "metrics and alerts are set per deployment (TASKPLANE_METRICS_PORT=0, deploy/ alert rules)"
            raise _refuse("observability", reason)
        return enabled


class PersistenceSpec(_Spec):
    backend: Literal["postgresql"] = "postgresql"
    connection_string: SecretStr | None = None  # never printed, not part of the version
    backup_schedule: str | None = None


class SystemSpec(_Spec):
    agents: tuple[AgentSpec, ...]
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    breakers: BreakersSpec = Field(default_factory=BreakersSpec)
    observability: ObservabilitySpec = Field(default_factory=ObservabilitySpec)
    persistence: PersistenceSpec = Field(default_factory=PersistenceSpec)
    schedules: tuple[ScheduleManifest, ...] = ()  # cron schedules (_manifest_schedules.py)
    policy: PolicySpec | None = None  # governance: taskplane/_manifest_policy.py
    scheduling: SchedulingSpec | None = None  # docs/scheduling.md; None: no dispatcher unless a run has a tenant

    @field_validator("agents")
    @classmethod
    def _not_empty(cls, agents: tuple[AgentSpec, ...]) -> tuple[AgentSpec, ...]:
        if not agents:
            raise _refuse("agents", "at least one agent is required")
        return agents


class Metadata(_Spec):
    name: SystemName


class AgentSystemManifest(_Spec):
    """A validated AgentSystem. Build it with ``load_manifest`` or ``validate_manifest``,
    which also run the cross-field checks (dependencies, cycles, duplicates)."""

    api_version: str
    kind: Literal["AgentSystem"]
    metadata: Metadata
    spec: SystemSpec

    @field_validator("api_version")
    @classmethod
    def _known_api_version(cls, api_version: str) -> str:
        if api_version not in API_VERSIONS:
            expected = " or ".join(API_VERSIONS)
            raise _refuse(
                "api_version", f"unsupported apiVersion {api_version!r}; expected {expected}"
            )
        return api_version

    @property
    def name(self) -> str:
        return self.metadata.name

    def check(self) -> None:
        """Raise ``ManifestError`` if the agents do not form a valid DAG."""
        data = self.model_dump(mode="python", by_alias=True)
        problems = graph_problems(data["spec"]["agents"])
        if problems:
            raise ManifestError(problems)

    def topological_order(self) -> list[AgentSpec]:
        """Agents so that each comes after its dependencies; ties keep declaration order."""
        by_name = {agent.name: agent for agent in self.spec.agents}
        order = topological_order([(a.name, a.dependencies) for a in self.spec.agents])
        return [by_name[name] for name in order]

    def canonical_json(self) -> str:
        """The content that identifies this system: defaults filled in, durations in one
        spelling, the connection string masked."""
        data = self.model_dump(mode="json", by_alias=True)
        execution = data["spec"]["execution"]
        if execution.get("finishedRunRetention") is None:  # unset: versions applied before it existed stay
            execution.pop("finishedRunRetention", None)
        drop_unset(data)
        if not data["spec"].get("schedules"):  # none: versions applied before schedules existed stay
            data["spec"].pop("schedules", None)
        for agent in data["spec"]["agents"]:
            for tool in agent["tools"]:
                for unset in [name for name in ("rateLimit", "concurrency") if tool.get(name) is None]:
                    tool.pop(unset)  # unset: versions applied before the tool governor stay
        if data["spec"].get("policy") is None:  # unset: versions applied before it existed stay
            data["spec"].pop("policy", None)
        if data["spec"].get("scheduling") is None:  # unset: versions applied before it existed stay
            data["spec"].pop("scheduling", None)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def version(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    def to_plan(self, version: str) -> SystemPlan:
        """Compile to the plan a run is pinned to; tool breakers fall back to spec.breakers."""
        self.check()
        breakers, execution = self.spec.breakers, self.spec.execution
        agents = tuple(
            AgentPlan(
                name=agent.name,
                model=agent.model,
                tools=tuple(
                    ToolPlan(
                        name=tool.name,
                        timeout_ms=tool.timeout,
                        retries=tool.retries,
                        isolation=tool.isolation,
                        failure_threshold=tool.failure_threshold or breakers.failure_threshold,
                        cooldown_ms=tool.cooldown or breakers.cooldown,
                        fallback=tool.fallback,
                        network=tool.network,
                        **approval_plan(tool.approval, tool.operation),
                        rate_limit=tool.rate_limit[0] if tool.rate_limit else 0,
                        rate_period_ms=tool.rate_limit[1] if tool.rate_limit else 0,
                        concurrency=tool.concurrency or 0,
                    )
                    for tool in agent.tools
                ),
                dependencies=agent.dependencies,
            )
            for agent in self.spec.agents
        )
        policy = ExecutionPolicy(
            lease_timeout_ms=execution.lease_timeout,
            max_retries=execution.max_retries,
            initial_backoff_ms=execution.initial_backoff,
            backoff_multiplier=execution.backoff_multiplier,
            max_backoff_ms=execution.max_backoff_cap,
            jitter_fraction=execution.jitter_fraction,
            dead_letter_transition=execution.dead_letter_transition,
            idempotency_tracking=execution.idempotency_tracking,
            finished_run_retention_ms=execution.finished_run_retention,
        )
        governance = self.spec.policy.plan() if self.spec.policy is not None else None
        scheduling = self.spec.scheduling.to_policy() if self.spec.scheduling is not None else None
        return SystemPlan(name=self.name, version=version, agents=agents, execution=policy, policy=governance,
                          scheduling=scheduling)


def load_manifest(source: str | Path) -> AgentSystemManifest:
    """Load from a file (a ``Path``, or a one-line ``str``) or from YAML text.

    Raises ``UserInputError`` for a missing file, ``ManifestError`` for anything else.
    """
    if isinstance(source, Path) or ("\n" not in source and not source.lstrip().startswith("{")):
        return load_manifest_file(source)
    return load_manifest_text(source)


def load_manifest_file(path: str | Path) -> AgentSystemManifest:
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)  # a larger file is refused unread
    except FileNotFoundError:
        raise UserInputError(f"manifest file not found: {path}", field=str(path)) from None
    except OSError as exc:
        raise UserInputError(f"cannot read manifest {path}: {exc}", field=str(path)) from None
    if len(data) > MAX_BYTES:
        raise ManifestError([(ROOT, f"larger than {MAX_BYTES} bytes (the limit)")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1)
        raise ManifestError([(f"line {line + 1}, column {column + 1}",
                              f"not UTF-8 text (byte 0x{data[exc.start]:02x})")]) from None
    return load_manifest_text(text)


def load_manifest_text(text: str) -> AgentSystemManifest:
    return validate_manifest(parse_yaml(text))


def manifest_version(source: str | AgentSystemManifest) -> str:
    """Short sha256 of the canonical JSON: equal content, equal version, whatever the
    spelling (key order, ``10s`` vs ``10000ms``, defaults written out or not)."""
    manifest = source if isinstance(source, AgentSystemManifest) else load_manifest_text(source)
    return manifest.version()


def validate_manifest(data: object) -> AgentSystemManifest:
    """Validate parsed YAML; every problem is reported at once."""
    if not isinstance(data, Mapping):
        kind = "nothing" if data is None else type(data).__name__
        reason = f"a manifest is a mapping with apiVersion, kind, metadata and spec; got {kind}"
        raise ManifestError([(ROOT, reason)])
    problems: list[Problem] = []
    manifest: AgentSystemManifest | None = None
    try:
        manifest = AgentSystemManifest.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problem(error, data) for error in exc.errors())
    spec = data.get("spec")
    agents = spec.get("agents") if isinstance(spec, Mapping) else None
    if isinstance(agents, list):
        problems.extend(p for p in graph_problems(agents) if p not in problems)
    if manifest is not None:
        problems.extend(Problem(path, reason) for path, reason in schedule_problems(manifest.spec.schedules))
        problems.extend(limit_problems(manifest.spec.agents))
    if problems or manifest is None:
        raise ManifestError(problems)
    return manifest


def _known_keys() -> list[str]:
    models: list[type[BaseModel]] = [
        AgentSystemManifest,
        Metadata,
        SystemSpec,
        AgentSpec,
        ToolSpec,
        ExecutionSpec,
        BreakersSpec,
        ObservabilitySpec,
        PersistenceSpec,
        ScheduleManifest,
        PolicySpec,
        SchedulingSpec,
        TenantSpec,
    ]
    return sorted({field.alias or name for m in models for name, field in m.model_fields.items()})


def _problem(error: ErrorDetails, data: object) -> Problem:
    path = _path(error["loc"], data)
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        reason = "required field missing"
    elif kind == "extra_forbidden":
        reason = "unknown field"
        close = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(), n=1)
        reason += f" (did you mean {close[0]}?)" if close else ""
    elif kind == "enum":
        reason = f"unknown {error['loc'][-1]} {_shown(value)}; expected {ctx.get('expected')}"
    elif kind == "literal_error":
        reason = f"unsupported value {_shown(value)}; expected {ctx.get('expected')}"
    elif kind in ("greater_than_equal", "less_than_equal"):
        bound = ">=" if kind == "greater_than_equal" else "<="
        reason = f"must be {bound} {ctx.get('ge', ctx.get('le'))}, got {_shown(value)}"
    else:
        reason = error["msg"].removeprefix("Value error, ")
    return Problem(path, reason)


def _shown(value: object, limit: int = 80) -> str:
    """``repr`` of user input, clipped (an int of 5,000 digits has no repr at all)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number too long to show"
    return text if len(text) <= limit else text[:limit] + "..."


def _path(loc: tuple[int | str, ...], data: object) -> str:
    """``('spec','agents',0,'tools',1,'timeout')`` → ``spec.agents[0].tools[1].web.search.timeout``,
    walking the raw data so a long-form tool shows its name as the user wrote it."""
    path, node, parent_key = "", data, None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            if parent_key == "tools" and isinstance(node, Mapping) and len(node) == 1:
                ((tool_name, options),) = node.items()
                if tool_name != "name":
                    path += f".{tool_name}"
                    node = options
        else:
            path += f".{part}" if path else str(part)
            node = node.get(part) if isinstance(node, Mapping) else None
        parent_key = part
    return path or ROOT
