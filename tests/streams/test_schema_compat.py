"""Schema evolution against every release fixture (``schemas/releases/<version>/``),
both ways: the current reader decodes what released writers wrote, and a released
reader resolves what the current writer writes."""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from taskplane.contract.messages import ClaimTask
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.serde import (
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
from tests.streams.test_serde import META, instances_of

CLAIM = "taskplane.orchestrator.ClaimTask"
RELEASES = sorted(path.name for path in (SCHEMA_DIR / "releases").iterdir() if path.is_dir())


@cache
def serde() -> Serde:
    return Serde()


@cache
def release(version: str) -> dict[str, RegisteredSchema]:
    """A release's message schemas, as a registry built from them alone sees them."""
    schemas = load_schema_set(SCHEMA_DIR / "releases" / version)
    return {entry.full_name: entry for entry in SchemaRegistry(schemas).messages()}


def current(full_name: str) -> RegisteredSchema:
    entry = serde().registry.current(full_name)
    assert entry is not None, f"{full_name} was released and must not be removed"
    return entry


def test_there_is_a_release_fixture() -> None:
    assert RELEASES, "no schemas/releases/<version>/ fixture"


@pytest.mark.parametrize("version", RELEASES)
def test_every_released_writer_is_known(version: str) -> None:
    assert release(version), f"schemas/releases/{version} is empty"
    for entry in release(version).values():
        current(entry.full_name)
        assert serde().registry.writer(entry.fingerprint) is not None


@pytest.mark.parametrize(
    ("version", "full_name"), [(v, name) for v in RELEASES for name in sorted(release(v))]
)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_old_writer_new_reader_and_new_writer_old_reader(
    version: str, full_name: str, data: st.DataObject
) -> None:
    old, new = release(version)[full_name], current(full_name)
    value = data.draw(instances_of(domain_classes()[full_name]))
    meta = data.draw(META)
    written_now = serde().encode(value, meta)

    # A released reader resolves what the current writer wrote, unless it meets an enum
    # symbol added since (docs/wire-format.md: readers are deployed before writers emit it).
    try:
        as_old = schemaless_reader(BytesIO(written_now[HEADER_SIZE:]), new.parsed, old.parsed)
    except SchemaResolutionError as error:
        assume("not found in reader symbol list" not in str(error))
        raise

    # The current reader decodes what a released writer wrote (that same record)...
    out = BytesIO()
    out.write(MAGIC + old.fingerprint)
    schemaless_writer(out, old.parsed, as_old)
    decoded_meta, decoded = serde().decode(out.getvalue())
    assert decoded_meta == meta
    assert type(decoded) is type(value)
    # ...and loses nothing the release knew: seen through it again, it is the same record.
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


def test_from_directory_loads_every_release(tmp_path: Path) -> None:
    today = load_schema_set(SCHEMA_DIR)
    for name, schema in today.items():
        (tmp_path / f"{name.rpartition('.')[2]}.avsc").write_text(json.dumps(schema))
    (tmp_path / "releases" / "v9").mkdir(parents=True)
    for name, schema in _with_priority(today).items():
        (tmp_path / "releases" / "v9" / f"{name.rpartition('.')[2]}.avsc").write_text(
            json.dumps(schema)
        )
    registry = SchemaRegistry.from_directory(tmp_path)
    released = {entry.release for entry in registry.all()}
    assert released == {None, "v9"}  # v9 adds a ClaimTask version; the rest dedupe to current
    claim_v9 = next(entry for entry in registry.all() if entry.release == "v9")
    assert claim_v9.full_name == CLAIM
