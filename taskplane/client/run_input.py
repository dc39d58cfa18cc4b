"""A run's input: any JSON value, held as strict JSON text. ``NaN`` and ``Infinity``
are refused (Python's json reads and writes them; no other language's parser takes
them), and so is nesting deeper than the parser goes (a ``RecursionError`` was a
traceback on the CLI and a 500 on a webhook). Shared by the client, ``taskplane submit
--input`` and ``POST /hooks/<system>``."""

from __future__ import annotations

import json
from typing import Any

from taskplane.exceptions import UserInputError


def encode_input(value: Any) -> str:
    """``value`` as the run's input text (keys sorted); ``UserInputError`` (field ``input``)
    when it is not JSON."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise UserInputError(f"the run input is not JSON-serializable: {error}", field="input") from None
    except RecursionError:
        raise UserInputError("the run input is nested too deeply to encode", field="input") from None


def decode_input(text: str | bytes) -> Any:
    """``text`` read as strict JSON; ``UserInputError`` (field ``input``) saying why not."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise UserInputError(f"not JSON: {error.msg} at line {error.lineno} column {error.colno} "
                             f"(char {error.pos})", field="input") from None
    except UnicodeDecodeError as error:
        raise UserInputError(f"not JSON: not UTF-8 text (byte {error.object[error.start]:#04x})",
                             field="input") from None
    except RecursionError:
        raise UserInputError("not JSON this parser reads: nested too deeply", field="input") from None


def _refuse_constant(name: str) -> Any:
    raise UserInputError(f"not JSON: {name} is not a JSON value", field="input")
