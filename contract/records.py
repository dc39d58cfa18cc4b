"""``replace`` for the deciders' frozen dataclasses, and ``plain_fields``, which tells the
Avro codecs when a class is nothing but its fields.

``replace`` is ``dataclasses.replace`` for a plain class (``plain_fields``) without
``__init__``: such an instance is nothing but its fields, so a copy of them with the
changes swapped in is the object ``__init__`` would build: a function generated once per
class sets the fields as the generated ``__init__`` would (1.5 us for a TaskState, against
2.8 for ``dataclasses.replace``). Other classes keep ``dataclasses.replace`` (their
``__init__``/``__post_init__`` must run). A C copy of the slots came and went twice; it
moved no end-to-end figure beyond the noise (docs/dependencies.md, "Native code").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
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


_REPLACERS: dict[type, Callable[..., Any]] = {}


def _replacer(cls: type) -> Callable[..., Any]:
    names = plain_fields(cls)
    if names is None:
        function: Callable[..., Any] = dataclasses.replace
    else:
        lines = ["def replace(obj, /, **changes):", "    new = _new(_cls)"]
        lines += [f"    _set(new, {name!r}, changes.pop({name!r}) if {name!r} in changes else obj.{name})"
                  for name in names]
        lines += ["    if changes:", "        raise _unknown(changes)", "    return new"]
        namespace: dict[str, Any] = {"_cls": cls, "_new": object.__new__, "_set": object.__setattr__,
                                     "_unknown": lambda changes: TypeError(  # as dataclasses.replace says it
                                         f"{cls.__qualname__}.__init__() got an unexpected keyword argument "
                                         f"'{next(iter(changes))}'")}
        exec("\n".join(lines), namespace)  # noqa: S102 - code built from the class's own field names
        function = namespace["replace"]
    _REPLACERS[cls] = function
    return function


def _replace(obj: T, /, **changes: Any) -> T:
    cls = type(obj)
    function = _REPLACERS.get(cls) or _replacer(cls)
    return function(obj, **changes)  # type: ignore[no-any-return]


replace: Replace = _replace
"""``replace(obj, /, **changes)``: a copy of dataclass ``obj`` with ``changes``, equal to
``dataclasses.replace(obj, **changes)``."""
