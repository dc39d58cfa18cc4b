"""dataclasses.replace for plain frozen slots dataclasses (contract/_records_native.c)."""

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

class Replacer:
    def __init__(self, layout: Callable[[type], tuple[str, ...] | None], fallback: Callable[..., Any]) -> None: ...
    def __call__(self, obj: T, /, **changes: Any) -> T: ...
