"""``replace`` for the deciders' frozen dataclasses: ``dataclasses.replace``, faster.

Every evolve step copies a record with a few fields changed. ``dataclasses.replace``
does that through ``__init__``, which for a frozen dataclass calls
``object.__setattr__`` once per field: it was 35 % of the orchestrator's time in
process. For a *plain* dataclass (``plain_fields``) the instance is nothing but its
fields, so copying them with the changes swapped in builds the same object;
``contract/_records_native.c`` does that in C for slots classes. Everything else,
and every class where the extension did not build, goes to ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

try:
    from taskplane.contract import _records_native
except ImportError:  # installed without a C compiler
    _records_native = None  # type: ignore[assignment]

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


def _python_replace(obj: T, /, **changes: Any) -> T:
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]


replace: Replace = (
    _python_replace
    if _records_native is None
    else _records_native.Replacer(layout=plain_fields, fallback=dataclasses.replace)
)
"""``replace(obj, /, **changes)``: a copy of dataclass ``obj`` with ``changes``, equal to
``dataclasses.replace(obj, **changes)``."""
