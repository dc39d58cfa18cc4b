"""A run's input is strict JSON, read (CLI, webhooks) and written (the client) alike."""

from __future__ import annotations

import math
from typing import Any

import pytest

from taskplane.client.run_input import decode_input, encode_input
from taskplane.exceptions import UserInputError


def nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


@pytest.mark.parametrize(("text", "says"), [
    ("NaN", "not JSON: NaN is not a JSON value"), ('{"a": -Infinity}', "not JSON: -Infinity is not a JSON value"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"), (b"\xff", "not UTF-8 text (byte 0xff)"),
    ("", "not JSON: Expecting value at line 1 column 1 (char 0)"),
])
def test_text_that_is_not_strict_json_is_refused_with_the_field(text: str | bytes, says: str) -> None:
    with pytest.raises(UserInputError, match=r"not JSON") as refused:
        decode_input(text)
    assert says in str(refused.value) and refused.value.field == "input" and refused.value.exit_code == 2


@pytest.mark.parametrize("value", [math.nan, {"a": math.inf}, nested(100_000), {1, 2}])
def test_a_value_that_is_not_json_is_refused_with_the_field(value: object) -> None:
    with pytest.raises(UserInputError) as refused:
        encode_input(value)
    assert refused.value.field == "input"


def test_json_goes_through_with_keys_sorted() -> None:
    assert encode_input(decode_input('{"b": [1, 2.5, null], "a": "\\u00e9"}')) == '{"a": "\\u00e9", "b": [1, 2.5, null]}'
