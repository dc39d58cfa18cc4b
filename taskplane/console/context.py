"""What every route reads: the console's settings and the adapters built from them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import Request

from taskplane.console.commands import CommandWriter
from taskplane.console.queries import ConsoleQueries
from taskplane.console.rendering import Renderer
from taskplane.console.security import Guard
from taskplane.console.settings import ConsoleSettings
from taskplane.console.systems import SystemCatalog


@dataclass
class Console:
    """What every route reads: the settings and the adapters built from them."""

    settings: ConsoleSettings
    queries: ConsoleQueries
    commands: CommandWriter
    systems: SystemCatalog | None
    guard: Guard
    render: Renderer

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console
