"""plain_fields: which dataclasses the Avro codecs may build by setting their fields
directly (every contract record), and which must go through ``__init__``."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskplane.contract.messages import AttemptRecord
from taskplane.contract.records import plain_fields, replace
from taskplane.contract.state import TaskState, TaskStatus
from taskplane.streams.serde import domain_classes

DOMAIN = {name: cls for name, cls in domain_classes().items()}


def test_every_domain_record_is_plain() -> None:
    """The contract's records are all plain frozen slots dataclasses: none of them
    takes the codecs' slow path by accident."""
    assert {name for name, cls in DOMAIN.items() if plain_fields(cls) is None} == set()


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


def test_a_post_init_or_a_hand_written_init_is_not_plain() -> None:
    assert plain_fields(_Checked) is None
    assert plain_fields(_WithoutInit) is None
    with pytest.raises(ValueError, match="negative"):
        replace(_Checked(1), amount=-1)


@given(st.data())
def test_replace_of_a_plain_record_is_dataclasses_replace(data: st.DataObject) -> None:
    """The generated copy gives what ``dataclasses.replace`` gives, for any subset of
    fields changed, and the copy is a new object (the old one is untouched)."""
    task = TaskState("parser", TaskStatus.LEASED, 2, 1, 3, "w1", 10, None, '{"a": 1}', "boom",
                     None, None, (AttemptRecord(1, 1, "w0", "lost"),))
    names = [f.name for f in dataclasses.fields(TaskState)]
    changed = data.draw(st.lists(st.sampled_from(names), unique=True))
    values = {"name": "other", "status": TaskStatus.READY, "attempt": 7, "failures": 0, "epoch": 9,
              "holder": None, "lease_expires_ms": 99, "retry_due_ms": 5, "output": None, "last_error": None,
              "last_failure_kind": None, "blocked_by": "x", "history": ()}
    changes = {name: values[name] for name in changed}
    copy = replace(task, **changes)
    assert copy == dataclasses.replace(task, **changes)
    assert copy is not task and task.name == "parser" and task.attempt == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.attempt = 1  # type: ignore[misc]


def test_replace_refuses_a_field_the_record_does_not_have() -> None:
    with pytest.raises(TypeError, match="TaskState has no field"):
        replace(TaskState("parser"), nmae="typo")
    with pytest.raises(TypeError):
        dataclasses.replace(TaskState("parser"), nmae="typo")  # as dataclasses.replace does
