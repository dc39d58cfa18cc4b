"""plain_fields: which dataclasses the Avro codecs may build by setting their fields
directly (every contract record), and which must go through ``__init__``."""

from __future__ import annotations

import dataclasses

import pytest

from taskplane.contract.records import plain_fields, replace
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
