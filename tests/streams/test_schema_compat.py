"""Schema evolution against the last release fixture (``schemas/releases/v1``), both
ways: the current reader decodes what v1 writers wrote, and a v1 reader resolves
what the current writer writes."""

from __future__ import annotations

import dataclasses
from functools import cache
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serde import META, instances_of  # pytest puts this directory on sys.path

from processors.orchestrator.messages import ClaimTask
from streams.exceptions import SerdeError
from streams.serde import (
    HEADER_SIZE,
    MAGIC,
    SCHEMA_DIR,
    RegisteredSchema,
    SchemaRegistry,
    Serde,
    domain_classes,
    load_schema_set,
    new_meta,
)

RELEASE = "v1"
CLAIM = "taskplane.orchestrator.ClaimTask"


@cache
def serde() -> Serde:
    return Serde()


@cache
def release() -> dict[str, RegisteredSchema]:
    """The release's message schemas, as a registry built from them alone sees them."""
    schemas = load_schema_set(SCHEMA_DIR / "releases" / RELEASE)
    return {entry.full_name: entry for entry in SchemaRegistry(schemas).messages()}


def current(full_name: str) -> RegisteredSchema:
    entry = serde().registry.current(full_name)
    assert entry is not None, f"{full_name} was released in {RELEASE} and must not be removed"
    return entry


def test_the_release_fixture_exists_and_its_writers_are_known() -> None:
    assert release(), f"schemas/releases/{RELEASE} is empty"
    for entry in release().values():
        current(entry.full_name)
        assert serde().registry.writer(entry.fingerprint) is not None


@pytest.mark.parametrize("full_name", sorted(release()))
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_old_writer_new_reader_and_new_writer_old_reader(
    full_name: str, data: st.DataObject
) -> None:
    old, new = release()[full_name], current(full_name)
    value = data.draw(instances_of(domain_classes()[full_name]))
    meta = data.draw(META)
    written_now = serde().encode(value, meta)

    # A v1 reader resolves what the current writer wrote.
    as_old = schemaless_reader(BytesIO(written_now[HEADER_SIZE:]), new.parsed, old.parsed)

    # The current reader decodes what a v1 writer wrote (that same record)...
    out = BytesIO()
    out.write(MAGIC + old.fingerprint)
    schemaless_writer(out, old.parsed, as_old)
    decoded_meta, decoded = serde().decode(out.getvalue())
    assert decoded_meta == meta
    assert type(decoded) is type(value)
    # ...and loses nothing v1 knew: seen through v1 again, it is the same record.
    rewritten = serde().encode(decoded, decoded_meta)
    assert schemaless_reader(BytesIO(rewritten[HEADER_SIZE:]), new.parsed, old.parsed) == as_old


# ------------------------------------------------------------------ an evolution, in the test


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimTaskWithPriority:
    """ClaimTask as a later version might define it."""

    run_id: str
    task: str
    attempt: int
    worker_id: str
    priority: int = 0


def _with_priority(schemas: dict[str, Any]) -> dict[str, Any]:
    claim = schemas[CLAIM]
    fields = [*claim["fields"], {"name": "priority", "type": "long", "default": 0}]
    return {**schemas, CLAIM: {**claim, "fields": fields}}


def test_an_added_field_with_a_default_evolves_both_ways() -> None:
    today = load_schema_set(SCHEMA_DIR)
    tomorrow = _with_priority(today)
    meta = new_meta("run-1", "ClaimTask", 1_700_000_000_000)
    old_serde = Serde(SchemaRegistry(today, {"next": tomorrow}))
    new_serde = Serde(
        SchemaRegistry(tomorrow, {"previous": today}),
        {**domain_classes(), CLAIM: ClaimTaskWithPriority},
    )

    # New writer, old reader: the extra field is dropped.
    written_by_new = new_serde.encode(
        ClaimTaskWithPriority("run-1", "parser", 2, "w-1", priority=7), meta
    )
    assert (
        written_by_new[:HEADER_SIZE]
        != old_serde.encode(ClaimTask("run-1", "parser", 2, "w-1"), meta)[:HEADER_SIZE]
    )
    assert old_serde.decode(written_by_new) == (meta, ClaimTask("run-1", "parser", 2, "w-1"))

    # Old writer, new reader: the missing field takes its default.
    written_by_old = old_serde.encode(ClaimTask("run-1", "parser", 2, "w-1"), meta)
    assert new_serde.decode(written_by_old) == (
        meta,
        ClaimTaskWithPriority("run-1", "parser", 2, "w-1", 0),
    )


def test_a_field_added_without_a_default_breaks_old_writers() -> None:
    """Why the rule exists: the current reader cannot fill a field v1 never wrote."""
    today = load_schema_set(SCHEMA_DIR)
    claim = today[CLAIM]
    broken = {
        **today,
        CLAIM: {**claim, "fields": [*claim["fields"], {"name": "priority", "type": "long"}]},
    }
    new_serde = Serde(
        SchemaRegistry(broken, {"previous": today}),
        {**domain_classes(), CLAIM: ClaimTaskWithPriority},
    )
    with pytest.raises(SerdeError):
        new_serde.decode(serde().encode(ClaimTask("r", "t", 1, "w"), new_meta("r", "ClaimTask", 1)))
