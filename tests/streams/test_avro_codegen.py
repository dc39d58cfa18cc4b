"""The compiled codecs agree with fastavro byte for byte, both ways, for every
message type: fastavro is the reference, the compiled path is the hot path."""

from __future__ import annotations

import contextlib
from io import BytesIO

import pytest
from fastavro import schemaless_reader
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serde import META, classes, instances_of, message_names, serde

from streams.exceptions import SerdeError
from streams.serde import HEADER_SIZE


@pytest.mark.parametrize("full_name", message_names())
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_compiled_encoding_equals_fastavro(full_name: str, data: st.DataObject) -> None:
    value = data.draw(instances_of(classes()[full_name]))
    meta = data.draw(META)
    compiled = serde().encode(value, meta)
    assert compiled == serde().encode_with_fastavro(value, meta)
    # and fastavro reads what the compiled encoder wrote
    schema = serde().registry.current(full_name)
    assert schema is not None
    body = BytesIO(compiled)
    body.seek(HEADER_SIZE)
    record = schemaless_reader(body, schema.parsed, None)
    assert record["meta"]["message_id"] == meta.message_id
    assert body.tell() == len(compiled)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_corrupt_bodies_raise_serde_errors_only(tail: bytes) -> None:
    from processors.orchestrator.messages import ClaimTask
    from streams.serde import new_meta

    valid = serde().encode(ClaimTask("run", "task", 1, "worker"), new_meta("run", "ClaimTask", 1))
    for data in (valid[:HEADER_SIZE] + tail, valid[: len(valid) - 1], valid + tail[:1]):
        with contextlib.suppress(SerdeError):  # any other exception fails the test
            serde().decode(data)
