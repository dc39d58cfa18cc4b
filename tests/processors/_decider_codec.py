"""A tiny JSON codec for the replay fixtures, test-only: ``dataclasses.asdict`` out,
the type hints back in. (The wire format is Avro, in ``taskplane.streams.serde``; this keeps
the fixtures readable and independent of it.)"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from taskplane.contract.messages import Event
from taskplane.contract.state import RunState

EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Event)}


def encode(value: Any) -> Any:
    """JSON-ready data (str enums become their values)."""
    return json.loads(json.dumps(dataclasses.asdict(value)))


def decode(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if data is None:
            return None
        assert len(options) == 1, f"ambiguous union {tp}"
        return decode(options[0], data)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return tuple(decode(item, element) for element in data)
    if origin is dict:
        _, value_type = typing.get_args(tp)
        return {key: decode(value_type, element) for key, element in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        # A field added since the fixture was written takes its default, as Avro's
        # schema resolution gives it (docs/wire-format.md: fields are added with one).
        return tp(**{f.name: decode(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.name in data})
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    if tp is float:
        return float(data)
    assert tp in (int, str, bool), f"no decoder for {tp}"
    return data


def dump_log(log: list[tuple[str, Event]]) -> list[dict[str, Any]]:
    return [{"key": key, "type": type(event).__name__, "event": encode(event)} for key, event in log]


def load_log(records: list[dict[str, Any]]) -> list[tuple[str, Event]]:
    return [(r["key"], decode(EVENT_TYPES[r["type"]], r["event"])) for r in records]


def write_fixture(path: Path, log: list[tuple[str, Event]], states: dict[str, RunState | None]) -> None:
    document = {
        "log": dump_log(log),
        "states": {key: None if state is None else encode(state) for key, state in sorted(states.items())},
    }
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


def read_fixture(path: Path) -> tuple[list[tuple[str, Event]], dict[str, RunState | None]]:
    document = json.loads(path.read_text())
    states = {key: None if data is None else decode(RunState, data) for key, data in document["states"].items()}
    return load_log(document["log"]), states
