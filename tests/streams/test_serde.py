"""The wire format: every domain type round-trips, matches its schema, encodes
deterministically, and bad bytes fail as SerdeError."""

from __future__ import annotations

import dataclasses
import json
import typing
from enum import Enum
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.contract.messages import ClaimTask, FailTask
from taskplane.contract.plan import (
    AgentPlan,
    ExecutionPolicy,
    Isolation,
    SystemPlan,
    ToolPlan,
)
from taskplane.contract.state import RunState, TaskState, TaskStatus, ToolCallRecord
from taskplane.streams._avro_mapping import record_mapping
from taskplane.streams.exceptions import SerdeError, StreamsError
from taskplane.streams.serde import (
    DOMAIN_MODULES,
    HEADER_SIZE,
    MAGIC,
    META_NAME,
    SCHEMA_DIR,
    Meta,
    SchemaRegistry,
    Serde,
    domain_classes,
    expand,
    is_message,
    load_schema_set,
    new_meta,
    schema_fingerprint,
)

LONG = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=12)
META = st.builds(
    Meta,
    message_id=TEXT,
    key=TEXT,
    type=TEXT,
    schema_version=st.integers(-(2**31), 2**31 - 1),
    causation_id=st.none() | TEXT,
    correlation_id=st.none() | TEXT,
    timestamp_ms=LONG,
)


@cache
def serde() -> Serde:
    return Serde()


@cache
def other_serde() -> Serde:
    """A second instance: nothing about the bytes depends on the instance."""
    return Serde()


@cache
def current_schemas() -> dict[str, dict[str, Any]]:
    return load_schema_set(SCHEMA_DIR)


@cache
def classes() -> dict[str, type]:
    return domain_classes()


def message_names() -> list[str]:
    return sorted(name for name, schema in current_schemas().items() if is_message(schema))


def _optional_inner(hint: Any) -> Any | None:
    args = typing.get_args(hint)
    if type(None) in args:
        return next(arg for arg in args if arg is not type(None))
    return None


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """Values of any mapped field type, built from the type hints alone."""
    inner = _optional_inner(hint)
    if inner is not None:
        return st.none() | strategy_for(inner)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return st.lists(strategy_for(typing.get_args(hint)[0]), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(TEXT, strategy_for(typing.get_args(hint)[1]), max_size=3)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return st.sampled_from(hint)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return LONG
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if hint is str:
        return TEXT
    assert dataclasses.is_dataclass(hint), hint
    return instances_of(hint)


@cache
def instances_of(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)})


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize("full_name", message_names())
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_message_round_trips(full_name: str, data: st.DataObject) -> None:
    value = data.draw(instances_of(classes()[full_name]))
    meta = data.draw(META)
    encoded = serde().encode(value, meta)
    assert encoded[:2] == MAGIC
    assert serde().decode(encoded) == (meta, value)


@pytest.mark.parametrize("full_name", message_names())
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_encoding_is_deterministic(full_name: str, data: st.DataObject) -> None:
    value = data.draw(instances_of(classes()[full_name]))
    meta = data.draw(META)
    assert serde().encode(value, meta) == serde().encode(value, meta)
    assert other_serde().encode(value, meta) == serde().encode(value, meta)


def _reordered(value: Any) -> Any:
    """The same value with every dict filled in reverse order."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, tuple):
        return tuple(_reordered(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value, **{f.name: _reordered(getattr(value, f.name)) for f in dataclasses.fields(value)}
        )
    return value


@settings(max_examples=50, deadline=None)
@given(state=instances_of(RunState), meta=META)
def test_map_order_does_not_change_the_bytes(state: RunState, meta: Meta) -> None:
    assert serde().encode(_reordered(state), meta) == serde().encode(state, meta)


def test_a_realistic_run_state_round_trips() -> None:
    tool = ToolPlan("web.search", 5_000, 2, Isolation.PROCESS, 5, 60_000, fallback="cache.search")
    plan = SystemPlan(
        "pipeline",
        "v3",
        (AgentPlan("parser", "gpt-4", (tool,), ()), AgentPlan("publisher", None, (), ("parser",))),
        ExecutionPolicy(),
    )
    state = RunState(
        "run-1",
        plan,
        '{"doc": 1}',
        1_700_000_000_000,
        tasks={
            "publisher": TaskState("publisher"),
            "parser": TaskState("parser", TaskStatus.LEASED, 1, 0, 3, "w-1"),
        },
        journal={"k1": ToolCallRecord("k1", "web.search", 0, True, '"ok"', None, 3)},
    )
    meta = new_meta("run-1", "RunState", 5)
    assert serde().decode(serde().encode(state, meta)) == (meta, state)


# ------------------------------------------------------------------ schema <-> dataclass


def _namespace(cls: type) -> str:
    return next(ns for ns, modules in DOMAIN_MODULES.items() if cls.__module__ in {module.__name__ for module in modules})


def expected_type(hint: Any) -> Any:
    """The Avro type the mapping layer expects for a field type hint."""
    inner = _optional_inner(hint)
    if inner is not None:
        return ["null", expected_type(inner)]
    origin = typing.get_origin(hint)
    if origin is tuple:
        return {"type": "array", "items": expected_type(typing.get_args(hint)[0])}
    if origin is dict:
        return {"type": "map", "values": expected_type(typing.get_args(hint)[1])}
    scalars = {str: "string", bool: "boolean", int: "long", float: "double"}
    if hint in scalars:
        return scalars[hint]
    return f"{_namespace(hint)}.{hint.__name__}"


def expected_default(field: dataclasses.Field[Any], hint: Any) -> Any:
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    elif _optional_inner(hint) is not None:
        return None
    else:
        return dataclasses.MISSING
    if isinstance(default, Enum):
        return default.value
    return list(default) if isinstance(default, tuple) else default


@pytest.mark.parametrize("full_name", sorted(domain_classes()))
def test_every_dataclass_has_a_matching_schema(full_name: str) -> None:
    cls = classes()[full_name]
    schema = current_schemas().get(full_name)
    assert schema is not None, (
        f"no schemas/{cls.__name__}.avsc for {cls.__module__}.{cls.__qualname__}"
    )
    fields = schema["fields"][1:] if is_message(schema) else schema["fields"]
    hints = typing.get_type_hints(cls)
    assert [f["name"] for f in fields] == [f.name for f in dataclasses.fields(cls)]
    for avro_field, field in zip(fields, dataclasses.fields(cls), strict=True):
        hint = hints[field.name]
        assert avro_field["type"] == expected_type(hint), field.name
        default = expected_default(field, hint)
        if default is dataclasses.MISSING:
            assert "default" not in avro_field, field.name
        else:
            assert avro_field.get("default", dataclasses.MISSING) == default, field.name
        if isinstance(hint, type) and issubclass(hint, Enum):
            enum_schema = current_schemas()[expected_type(hint)]
            assert enum_schema["symbols"] == [member.value for member in hint]


def test_every_schema_file_belongs_to_a_domain_type() -> None:
    known = set(classes()) | {META_NAME}
    for name, schema in current_schemas().items():
        if schema["type"] == "enum":
            continue  # checked through the fields that use them
        assert name in known, f"{name}: no dataclass in {DOMAIN_MODULES}"
        path = SCHEMA_DIR / f"{name.rpartition('.')[2]}.avsc"
        assert json.loads(path.read_text())["name"] == schema["name"]


def test_meta_schema_matches_meta() -> None:
    fields = current_schemas()[META_NAME]["fields"]
    assert [f["name"] for f in fields] == [f.name for f in dataclasses.fields(Meta)]


def test_a_nested_type_change_changes_the_fingerprint() -> None:
    schemas = current_schemas()
    changed = dict(schemas)
    tool_plan = schemas["taskplane.orchestrator.ToolPlan"]
    changed["taskplane.orchestrator.ToolPlan"] = {
        **tool_plan,
        "fields": [*tool_plan["fields"], {"name": "weight", "type": "long", "default": 1}],
    }
    name = "taskplane.orchestrator.SubmitRun"
    assert schema_fingerprint(expand(name, changed)) != schema_fingerprint(expand(name, schemas))


def test_header_is_magic_and_the_writer_fingerprint() -> None:
    encoded = serde().encode(ClaimTask("r", "t", 1, "w"), new_meta("r", "ClaimTask", 1))
    expanded = expand("taskplane.orchestrator.ClaimTask", current_schemas())
    assert encoded[:HEADER_SIZE] == MAGIC + schema_fingerprint(expanded)


# ------------------------------------------------------------------ errors


def _claim_bytes() -> bytes:
    return serde().encode(
        ClaimTask("run-1", "parser", 1, "worker-7"), new_meta("run-1", "ClaimTask", 1)
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc3", b"\xc3\x01\x00", b"\x00\x01" + _claim_bytes()[2:], b'{"json": true}'],
    ids=["empty", "one-byte", "short-header", "bad-magic", "json"],
)
def test_not_single_object_encoding_is_a_serde_error(data: bytes) -> None:
    with pytest.raises(SerdeError):
        serde().decode(data)


def test_unknown_fingerprint_is_a_serde_error() -> None:
    data = _claim_bytes()
    with pytest.raises(SerdeError, match="unknown schema fingerprint"):
        serde().decode(MAGIC + b"\x00" * 8 + data[HEADER_SIZE:])


def test_every_truncation_and_trailing_bytes_are_serde_errors() -> None:
    data = _claim_bytes()
    for end in range(len(data)):
        with pytest.raises(SerdeError):
            serde().decode(data[:end])
    with pytest.raises(SerdeError, match="trailing"):
        serde().decode(data + b"\x00")


def test_serde_errors_are_not_retryable_streams_errors() -> None:
    with pytest.raises(StreamsError) as raised:
        serde().decode(b"")
    assert raised.value.retryable is False


def test_encoding_failures_are_serde_errors() -> None:
    meta = new_meta("r", "ClaimTask", 1)
    with pytest.raises(SerdeError, match="no schema"):
        serde().encode(object(), meta)
    with pytest.raises(SerdeError):
        serde().encode(ClaimTask("r", "t", 2**64, "w"), meta)  # beyond Avro long
    with pytest.raises(SerdeError):
        serde().encode(FailTask("r", "t", "w", 1, "e", kind="boom"), meta)  # type: ignore[arg-type]


def test_a_symbol_the_class_lacks_is_a_serde_error() -> None:
    """A writer with an enum symbol this code does not know: resolution fails, as SerdeError."""
    schemas = current_schemas()
    newer = dict(schemas)
    kind = schemas["taskplane.orchestrator.FailureKind"]
    newer["taskplane.orchestrator.FailureKind"] = {**kind, "symbols": [*kind["symbols"], "quota"]}
    reader = Serde(SchemaRegistry(schemas, {"next": newer}))
    writer = Serde(SchemaRegistry(newer))
    value = FailTask("r", "t", "w", 1, "e")
    record = {**record_mapping(FailTask).to_record(value), "kind": "quota"}
    data = _encode_raw(writer, "taskplane.orchestrator.FailTask", record)
    with pytest.raises(SerdeError):
        reader.decode(data)


def _encode_raw(writer: Serde, full_name: str, record: dict[str, Any]) -> bytes:
    """Bytes of a raw record dict (no dataclass) under ``writer``'s current schema."""
    from io import BytesIO

    from fastavro import schemaless_writer

    schema = writer.registry.current(full_name)
    assert schema is not None
    out = BytesIO()
    out.write(MAGIC + schema.fingerprint)
    meta = record_mapping(Meta).to_record(new_meta("r", full_name, 1))
    schemaless_writer(out, schema.parsed, {**record, "meta": meta})
    return out.getvalue()
