"""Any record on an input topic either decodes to what its consumer takes or is a
``SerdeError`` that sends it to ``poison``: never another exception (that would crash
a processor or a worker). Fuzzed below the broker; ``tests/e2e/test_poison_e2e.py`` does
the same through a real one."""

from __future__ import annotations

import contextlib
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskplane.contract.breaker import BreakerTick
from taskplane.contract.messages import (
    ClaimTask,
    Command,
    FailTask,
    FailureKind,
    SubmitRun,
    Tick,
    ToolOutcome,
    WorkItem,
)
from taskplane.contract.permits import AcquirePermit
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, SystemPlan
from taskplane.processors.breaker.app import BREAKER
from taskplane.processors.orchestrator.app import ORCHESTRATOR
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.poison import decoded_input
from taskplane.streams.serde import HEADER_SIZE, Meta, Serde, new_meta

SERDE = Serde()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLAN = SystemPlan("s", "v1", (AgentPlan("a", None, (), ()),), ExecutionPolicy())
GOOD = [
    SubmitRun("run-1", PLAN, "{}"), ClaimTask("run-1", "a", 1, "w1"),
    FailTask("run-1", "a", "w1", 1, "boom", FailureKind.NON_RETRYABLE), Tick(5),
    WorkItem("run-1", "s", "a", 1), ToolOutcome("web.search", False, 5, 60_000, "run-1", "HTTP 500"),
    BreakerTick(7),
]
ENCODED = [SERDE.encode(message, new_meta("run-1", type(message).__name__, 1)) for message in GOOD]
INPUTS = {"commands": ORCHESTRATOR.inputs, "tool-outcomes": BREAKER.inputs, "work": (WorkItem,)}


def mangled() -> st.SearchStrategy[bytes | None]:
    """Bytes from nowhere, and real records cut, grown, or with bytes changed (so the
    codecs' deeper paths are reached, not only the header check)."""
    real = st.sampled_from(ENCODED)
    flipped = st.tuples(real, st.data()).map(lambda pair: pair[0])
    return st.one_of(
        st.none(),
        st.binary(max_size=200),
        st.builds(lambda header, body: header[:HEADER_SIZE] + body, real, st.binary(max_size=200)),
        st.builds(lambda data, cut: data[:cut], real, st.integers(0, 400)),
        st.builds(lambda data, tail: data + tail, real, st.binary(min_size=1, max_size=8)),
        st.builds(_flip, flipped, st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1,
                                           max_size=4)),
    )


def _flip(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, byte in changes:
        out[position % len(out)] = byte
    return bytes(out)


KEYS = st.none() | st.binary(max_size=40) | st.sampled_from([b"run-1", "rün".encode(), b"\xff\xfe"])


@pytest.mark.parametrize("topic", INPUTS)
@FUZZ
@given(value=mangled(), key=KEYS)
def test_any_record_on_an_input_topic_is_its_input_or_a_serde_error(topic: str, value: bytes | None,
                                                                    key: bytes | None) -> None:
    accepted = INPUTS[topic]
    if value is not None:
        with contextlib.suppress(SerdeError):  # the codec itself raises nothing but SerdeError
            SERDE.decode(value)
    try:
        decoded_key, meta, message = decoded_input(SERDE.decode, value, key, accepted)
    except SerdeError as error:
        assert str(error)  # the reason, in the poison record's headers
        return
    assert type(message) in accepted and isinstance(decoded_key, str) and isinstance(meta, Meta)


def test_the_inputs_are_the_deciders_commands() -> None:
    assert set(ORCHESTRATOR.inputs) == set(typing.get_args(Command))
    assert set(BREAKER.inputs) == {ToolOutcome, BreakerTick, AcquirePermit}


@pytest.mark.parametrize(("value", "key", "reason"), [
    (None, b"run-1", "no value (a tombstone)"),
    (ENCODED[4], b"run-1", "a WorkItem is not an input here (expected SubmitRun | ClaimTask"),
    (ENCODED[0], b"\xff\xfe", "key is not UTF-8"),
    (b"\xc3\x01" + bytes(8), None, "unknown schema fingerprint 0000000000000000"),
], ids=["tombstone", "not-an-input", "key-not-utf8", "unknown-fingerprint"])  # stable ids: ENCODED holds a fresh uuid
def test_each_reason_says_what_was_wrong(value: bytes | None, key: bytes | None, reason: str) -> None:
    with pytest.raises(SerdeError, match="^" + reason.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        decoded_input(SERDE.decode, value, key, ORCHESTRATOR.inputs)


def test_a_record_keyed_by_nothing_takes_its_envelopes_key() -> None:
    key, meta, message = decoded_input(SERDE.decode, ENCODED[1], None, ORCHESTRATOR.inputs)
    assert (key, message) == ("run-1", GOOD[1])
