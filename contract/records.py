"""``replace`` for the deciders' frozen dataclasses, and ``plain_fields``, which tells the
Avro codecs when a class is nothing but its fields.

``replace`` is ``dataclasses.replace``. A C copy of the slots (``_records_native.c``)
replaced it until issue 12: it moved the orchestrator through the broker by +6 %, inside
the run-to-run noise, so it was removed (docs/benchmarks.md has the measurement).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


def plain_fields(cls: type) -> tuple[str, ...] | None:
    """The field names of ``cls`` when building it is only storing them: a generated
    ``__init__`` taking every field, no ``__post_init__``, no ``InitVar`` or
    ``ClassVar`` pseudo-fields, no custom ``__new__``. None otherwise."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.init:
        return None
    init = cls.__dict__.get("__init__")
    fields = dataclasses.fields(cls)
    generated = getattr(getattr(init, "__code__", None), "co_filename", None) == "<string>"
    if (
        not generated
        or hasattr(cls, "__post_init__")
        or cls.__new__ is not object.__new__  # type: ignore[comparison-overlap]
        or len(fields) != len(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        or not all(f.init for f in fields)
    ):
        return None
    return tuple(f.name for f in fields)


class Replace(Protocol):
    def __call__(self, obj: T, /, **changes: Any) -> T: ...


def _replace(obj: T, /, **changes: Any) -> T:
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]


replace: Replace = _replace
"""``replace(obj, /, **changes)``: a copy of dataclass ``obj`` with ``changes``."""
