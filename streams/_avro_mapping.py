"""Converters between frozen domain dataclasses and the dicts fastavro reads and writes.

Built once per class from its type hints, so the hot path is a few dict and
attribute operations per record. Supported field types: str, int, float, bool,
``X | None``, str-valued Enums, ``tuple[X, ...]``, ``dict[str, X]`` and nested
dataclasses. Maps are written in sorted key order so that equal values always
encode to equal bytes, whatever order their dicts were filled in.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from enum import Enum
from operator import attrgetter
from typing import Any

Convert = Callable[[Any], Any]
_SCALARS = (str, int, float, bool)


@dataclasses.dataclass(frozen=True, slots=True)
class RecordMapping:
    """How one dataclass becomes an Avro record dict and back."""

    cls: type
    to_record: Callable[[Any], dict[str, Any]]
    from_record: Callable[[dict[str, Any]], Any]


def record_mapping(cls: type) -> RecordMapping:
    """The mapping of ``cls``; raises TypeError on a field type it cannot map."""
    return RecordMapping(cls, _record_writer(cls), _record_reader(cls))


def _field_hints(cls: type) -> list[tuple[str, Any]]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return [(field.name, hints[field.name]) for field in dataclasses.fields(cls)]


def _optional_inner(hint: Any) -> Any | None:
    """``X`` when ``hint`` is ``X | None``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"only `X | None` unions are mapped, not {hint!r}")
        return args[0]
    return None


# ------------------------------------------------------------------ writing


def _record_writer(cls: type) -> Callable[[Any], dict[str, Any]]:
    fields = _field_hints(cls)
    names = tuple(name for name, _ in fields)
    converters = [(name, conv) for name, hint in fields if (conv := _writer(hint)) is not None]
    if not names:
        return lambda obj: {}
    values = attrgetter(*names) if len(names) > 1 else (lambda obj: (getattr(obj, names[0]),))
    if not converters:
        return lambda obj: dict(zip(names, values(obj)))  # noqa: B905 - names and values come from one tuple

    def to_record(obj: Any) -> dict[str, Any]:
        record = dict(zip(names, values(obj)))  # noqa: B905 - names and values come from one tuple
        for name, convert in converters:
            record[name] = convert(record[name])
        return record

    return to_record


def _writer(hint: Any) -> Convert | None:
    """The converter for one field's value; None when it passes through as is."""
    inner = _optional_inner(hint)
    if inner is not None:
        convert = _writer(inner)
        return None if convert is None else _optional(convert)
    origin = typing.get_origin(hint)
    if origin is tuple:
        convert = _writer(_tuple_item(hint))
        return list if convert is None else _list_of(convert)
    if origin is dict:
        convert = _writer(_map_value(hint))
        return _sorted_map(convert)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return attrgetter("value")
    if hint in _SCALARS:
        return None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _record_writer(hint)
    raise TypeError(f"no Avro mapping for {hint!r}")


def _sorted_map(convert: Convert | None) -> Convert:
    """Sorted keys: fastavro writes a map in its dict order, and equal values must
    encode to equal bytes."""
    if convert is None:
        return lambda value: {key: value[key] for key in sorted(value)}
    return lambda value: {key: convert(value[key]) for key in sorted(value)}


# ------------------------------------------------------------------ reading


def _record_reader(cls: type) -> Callable[[dict[str, Any]], Any]:
    converters = [
        (name, conv) for name, hint in _field_hints(cls) if (conv := _reader(hint)) is not None
    ]
    if not converters:
        return lambda record: cls(**record)

    def from_record(record: dict[str, Any]) -> Any:
        for name, convert in converters:
            record[name] = convert(record[name])
        return cls(**record)

    return from_record


def _reader(hint: Any) -> Convert | None:
    """The converter for one decoded field value; None when it passes through as is."""
    inner = _optional_inner(hint)
    if inner is not None:
        convert = _reader(inner)
        return None if convert is None else _optional(convert)
    origin = typing.get_origin(hint)
    if origin is tuple:
        convert = _reader(_tuple_item(hint))
        return tuple if convert is None else _tuple_of(convert)
    if origin is dict:
        convert = _reader(_map_value(hint))
        return None if convert is None else _map_of(convert)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return {member.value: member for member in hint}.__getitem__
    if hint in _SCALARS:
        return None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _record_reader(hint)
    raise TypeError(f"no Avro mapping for {hint!r}")


# ------------------------------------------------------------------ shared


def _optional(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def _list_of(convert: Convert) -> Convert:
    return lambda value: [convert(item) for item in value]


def _tuple_of(convert: Convert) -> Convert:
    return lambda value: tuple([convert(item) for item in value])


def _map_of(convert: Convert) -> Convert:
    return lambda value: {key: convert(item) for key, item in value.items()}


def _tuple_item(hint: Any) -> Any:
    args = typing.get_args(hint)
    if len(args) != 2 or args[1] is not Ellipsis:
        raise TypeError(f"only `tuple[X, ...]` is mapped, not {hint!r}")
    return args[0]


def _map_value(hint: Any) -> Any:
    key, value = typing.get_args(hint)
    if key is not str:
        raise TypeError(f"only `dict[str, X]` is mapped, not {hint!r}")
    return value
