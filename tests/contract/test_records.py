"""taskplane.contract.records.replace equals dataclasses.replace for every domain record, and
goes to dataclasses.replace for classes it cannot copy field by field."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.contract import records
from taskplane.contract.records import plain_fields, replace
from taskplane.streams.serde import domain_classes

DOMAIN = {name: cls for name, cls in domain_classes().items()}


def test_the_c_copy_is_built_where_ci_runs() -> None:
    if os.environ.get("CI"):
        assert records._records_native is not None


def test_every_domain_record_is_plain() -> None:
    """The deciders' records are all plain frozen slots dataclasses: none of them
    takes the slow path by accident."""
    assert {name for name, cls in DOMAIN.items() if plain_fields(cls) is None} == set()


@pytest.mark.parametrize("name", sorted(DOMAIN))
@settings(max_examples=25, deadline=None)
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


def test_an_unknown_field_is_a_type_error() -> None:
    from taskplane.contract.messages import Tick

    with pytest.raises(TypeError, match="unexpected keyword argument 'now'"):
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
        (_Derived(1, "a"), {"amount": 2}, _Derived(2, "a")),  # inherited slots: fallback
    ],
)
def test_other_dataclasses_go_to_dataclasses_replace(value: Any, changes: dict[str, Any], expected: Any) -> None:
    assert replace(value, **changes) == expected


def test_post_init_still_runs() -> None:
    assert plain_fields(_Checked) is None
    with pytest.raises(ValueError, match="negative"):
        replace(_Checked(1), amount=-1)
