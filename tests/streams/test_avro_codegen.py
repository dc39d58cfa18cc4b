"""The compiled codecs, native (C) and generated Python, agree with fastavro byte for
byte, both ways, for every message type: fastavro is the reference, the compiled path
is the hot path."""

from __future__ import annotations

import dataclasses
import os
from functools import cache
from io import BytesIO

import pytest
from fastavro import schemaless_reader
from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.streams._avro_codegen import native_available
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.serde import HEADER_SIZE, Serde, new_meta
from tests.streams.test_serde import META, classes, instances_of, message_names, serde

BACKENDS = ["native", "python"]


@cache
def backend(name: str) -> Serde:
    if name == "native" and not native_available():
        pytest.skip("taskplane.streams._avro_native did not build (no C compiler at install)")
    return Serde(native=name == "native")


def test_the_native_codecs_are_built_where_ci_runs() -> None:
    if os.environ.get("CI"):
        assert native_available(), "the C extension must build in CI (make installs with a compiler)"
    assert backend("python").native is False
    if native_available():
        assert serde().native is True  # the default Serde runs the C codecs



@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("full_name", message_names())
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_compiled_encoding_equals_fastavro(name: str, full_name: str, data: st.DataObject) -> None:
    codecs = backend(name)
    value = data.draw(instances_of(classes()[full_name]))
    meta = data.draw(META)
    compiled = codecs.encode(value, meta)
    assert compiled == serde().encode_with_fastavro(value, meta)
    assert codecs.encoder_of(type(value))(value, *dataclasses.astuple(meta)) == compiled
    assert codecs.decode(compiled) == (meta, value)
    # and fastavro reads what the compiled encoder wrote
    schema = serde().registry.current(full_name)
    assert schema is not None
    body = BytesIO(compiled)
    body.seek(HEADER_SIZE)
    record = schemaless_reader(body, schema.parsed, None)
    assert record["meta"]["message_id"] == meta.message_id
    assert body.tell() == len(compiled)


def _outcome(codecs: Serde, data: bytes) -> object:
    try:
        return codecs.decode(data)
    except SerdeError:
        return SerdeError  # any other exception fails the test


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=64))
def test_corrupt_bodies_raise_serde_errors_or_decode_as_fastavro_does(name: str, tail: bytes) -> None:
    """A cut body and a trailing byte are always SerdeErrors. Arbitrary body bytes may
    happen to be a valid ClaimTask; then the codec must read exactly what fastavro reads
    (and the generated Python codec agrees), never something else."""
    from taskplane.contract.messages import ClaimTask

    codecs = backend(name)
    valid = codecs.encode(ClaimTask("run", "task", 1, "worker"), new_meta("run", "ClaimTask", 1))
    for broken in (valid[: len(valid) - 1], valid + b"\x00"):
        with pytest.raises(SerdeError):
            codecs.decode(broken)
    data = valid[:HEADER_SIZE] + tail
    outcome = _outcome(codecs, data)
    assert outcome == _outcome(backend("python"), data)
    schema = codecs.registry.writer(valid[2:HEADER_SIZE])
    assert schema is not None
    body = BytesIO(data[HEADER_SIZE:])
    try:
        record = schemaless_reader(body, schema.parsed, None)
        fastavro_reads = body.tell() == len(tail)
    except Exception:  # fastavro raises many types for bad bytes
        fastavro_reads = False
    if outcome is SerdeError:
        return
    assert fastavro_reads
    meta, value = outcome  # type: ignore[misc]
    assert record["meta"]["message_id"] == meta.message_id
    assert (record["run_id"], record["task"], record["attempt"], record["worker_id"]) == (
        value.run_id, value.task, value.attempt, value.worker_id)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("full_name", message_names())
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_truncation_of_any_message_is_a_serde_error(name: str, full_name: str, data: st.DataObject) -> None:
    codecs = backend(name)
    encoded = codecs.encode(data.draw(instances_of(classes()[full_name])), data.draw(META))
    for end in range(len(encoded)):
        with pytest.raises(SerdeError):
            codecs.decode(encoded[:end])


@dataclasses.dataclass(frozen=True)
class _RenewWithoutSlots:  # same fields as taskplane.contract.messages.RenewLease, kept in a __dict__
    run_id: str
    task: str
    worker_id: str
    epoch: int


@pytest.mark.parametrize("name", BACKENDS)
def test_classes_without_slots_and_subclasses_take_the_attribute_path(name: str) -> None:
    """The native codec reads and writes __slots__ in place only for exactly the mapped
    class; anything else goes through getattr/setattr and gives the same bytes."""
    from taskplane.contract.messages import RenewLease

    class LoudRenew(RenewLease):
        __slots__ = ()

    meta = new_meta("r", "RenewLease", 7)
    reference = backend(name).encode(RenewLease("r", "t", "w", 9), meta)
    fields = dataclasses.astuple(meta)
    assert backend(name).encoder_of(RenewLease)(LoudRenew("r", "t", "w", 9), *fields) == reference
    plain = Serde(classes={"taskplane.orchestrator.RenewLease": _RenewWithoutSlots}, native=name == "native")
    assert plain.encode(_RenewWithoutSlots("r", "t", "w", 9), meta) == reference
    assert plain.decode(reference) == (meta, _RenewWithoutSlots("r", "t", "w", 9))
    assert backend(name).decode(reference) == (meta, RenewLease("r", "t", "w", 9))
