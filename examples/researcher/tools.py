"""researcher: web.search against the local flaky server (timeouts, retries, breaker).

Run input: ``{"question": "kafka leases"}``; TASKPLANE_FLAKY_URL says where the server is.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from taskplane import AgentContext, agent, tool
from taskplane.workers.exceptions import ToolError


@tool("web.search", network=True, env=("TASKPLANE_FLAKY_URL",))
def search(query: str) -> dict[str, Any]:
    base = os.environ.get("TASKPLANE_FLAKY_URL", "http://127.0.0.1:8403")
    url = f"{base}/search?{urllib.parse.urlencode({'q': query})}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise ToolError("web.search", f"HTTP {error.code}") from None
    return body


@tool("web.cached_search")
def cached_search(query: str) -> dict[str, Any]:
    """The degraded path when web.search's breaker is open: no network, no results."""
    return {"query": query, "results": [], "degraded": True}


@agent("researcher")
def researcher(ctx: AgentContext) -> dict[str, Any]:
    found = ctx.call_tool("web.search", query=ctx.run_input["question"])
    return {"question": ctx.run_input["question"], "sources": [r["url"] for r in found["results"]],
            "degraded": found.get("degraded", False)}
