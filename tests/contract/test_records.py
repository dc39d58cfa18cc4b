"""``replace`` (a copy generated per class) equals ``dataclasses.replace`` for every
domain record, and goes to ``dataclasses.replace`` for classes it cannot copy field by
field. ``plain_fields`` tells which classes the Avro codecs and the copy may build by
setting their fields directly."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.contract.records import plain_fields, replace
from taskplane.streams.serde import domain_classes

DOMAIN = {name: cls for name, cls in domain_classes().items()}


def test_every_domain_record_is_plain() -> None:
    """The contract's records are all plain frozen slots dataclasses: none of them
    takes the slow path by accident."""
    assert {name for name, cls in DOMAIN.items() if plain_fields(cls) is None} == set()


@pytest.mark.parametrize("name", sorted(DOMAIN))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_replace_equals_dataclasses_replace(name: str, data: st.DataObject) -> None:
    cls = DOMAIN[name]
    original = data.draw(st.from_type(cls))
    donor = data.draw(st.from_type(cls))
    fields = [f.name for f in dataclasses.fields(cls)]
    changed = data.draw(st.lists(st.sampled_from(fields), unique=True)) if fields else []
    changes = {field: getattr(donor, field) for field in changed}
    copy = replace(original, **changes)
    assert type(copy) is cls
    assert copy == dataclasses.replace(original, **changes)
    assert copy is not original
    assert original == dataclasses.replace(original)  # the original is untouched
    for field in fields:  # shared, not copied: the same objects as dataclasses.replace gives
        assert getattr(copy, field) is (changes[field] if field in changes else getattr(original, field))
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(copy, fields[0], getattr(copy, fields[0]))


def test_an_unknown_field_is_a_type_error_as_dataclasses_says_it() -> None:
    from taskplane.contract.messages import Tick

    with pytest.raises(TypeError, match="__init__\\(\\) got an unexpected keyword argument 'now'"):
        dataclasses.replace(Tick(1), now=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="__init__\\(\\) got an unexpected keyword argument 'now'"):
        replace(Tick(1), now=2)
    with pytest.raises(TypeError):
        replace(Tick(1), "positional")  # type: ignore[call-arg]


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    amount: int

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError("negative")


@dataclasses.dataclass(frozen=True)
class _WithoutInit:
    amount: int

    def __init__(self, amount: int) -> None:
        object.__setattr__(self, "amount", abs(amount))


@dataclasses.dataclass(frozen=True)
class _WithoutSlots:
    amount: int
    note: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class _Base:
    amount: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Derived(_Base):
    note: str


@pytest.mark.parametrize(
    ("value", "changes", "expected"),
    [
        (_WithoutSlots(1), {"note": "x"}, _WithoutSlots(1, "x")),
        (_Derived(1, "a"), {"amount": 2}, _Derived(2, "a")),  # inherited slots
    ],
)
def test_other_dataclasses_are_copied_as_dataclasses_replace_does(
        value: Any, changes: dict[str, Any], expected: Any) -> None:
    assert replace(value, **changes) == expected


def test_a_post_init_or_a_hand_written_init_still_runs() -> None:
    assert plain_fields(_Checked) is None
    assert plain_fields(_WithoutInit) is None
    with pytest.raises(ValueError, match="negative"):
        replace(_Checked(1), amount=-1)
    assert replace(_WithoutInit(1), amount=-5) == _WithoutInit(5)
