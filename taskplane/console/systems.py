"""The applied AgentSystems, from the compacted ``systems`` topic, with secrets removed,
and their cron schedules as the cron processor last committed them (``cron-changelog``).

A manifest may hold a connection string or other secrets: pages get the plan summary
(``taskplane.plan_summary``: ``connectionString: set``) and the YAML with every
secret-looking value replaced, never the text as applied.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import yaml

from taskplane.console.errors import ConsoleError
from taskplane.contract.errors import TaskplaneError
from taskplane.contract.plan import SystemDefinition, SystemPlan
from taskplane.contract.scheduling import SchedulingPolicy
from taskplane.schedules import ScheduleView, read_schedules
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics

REDACTED = "••••••"
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|connection.?string|api.?key|credential|dsn)", re.I)


class KafkaUnavailable(ConsoleError):
    status = 503
    retryable = True


def redact(value: Any) -> Any:
    """``value`` with every mapping entry whose key looks secret replaced by ``REDACTED``."""
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def describe(definition: SystemDefinition) -> dict[str, Any]:
    """A page-safe view of one applied definition."""
    from taskplane.manifest import load_manifest_text
    from taskplane.plan_summary import plan_summary

    try:
        summary: dict[str, Any] | None = plan_summary(load_manifest_text(definition.manifest))
    except TaskplaneError:
        summary = None  # applied by an older taskplane; the plan below still says what runs
    try:
        manifest = yaml.safe_dump(redact(yaml.safe_load(definition.manifest)), sort_keys=False)
    except yaml.YAMLError:
        manifest = "(the applied manifest is not YAML)"
    return {"name": definition.name, "version": definition.version, "summary": summary,
            "agents": [{"name": a.name, "dependencies": list(a.dependencies)} for a in definition.plan.agents],
            "manifest": manifest, "scheduling": scheduling_line(definition.plan.scheduling),
            "limits": limit_lines(definition.plan)}


def limit_lines(plan: SystemPlan) -> list[str]:
    """Each limited tool's fleet-wide limits (docs/scheduling.md, the tool governor), once."""
    from taskplane.rates import format_rate

    lines: dict[str, str] = {}
    for agent in plan.agents:
        for tool in agent.tools:
            if tool.limited and tool.name not in lines:
                parts = [format_rate(tool.rate_limit, tool.rate_period_ms)] if tool.rate_limit else []
                parts += [f"at most {tool.concurrency} at once"] if tool.concurrency else []
                lines[tool.name] = f"{tool.name}: {', '.join(parts)}"
    return list(lines.values())


def scheduling_line(policy: SchedulingPolicy | None) -> str | None:
    """The fair-share policy in one line (docs/scheduling.md); None when the system has none."""
    if policy is None:
        return None
    from taskplane.durations import format_duration

    tenants = ", ".join(f"{t.name} (weight {t.weight}" + (f", at most {t.max_concurrent}" if t.max_concurrent else "")
                        + ")" for t in policy.tenants)
    others = f"others weight {policy.default_weight}" + (
        f", at most {policy.default_max_concurrent}" if policy.default_max_concurrent else "")
    aging = format_duration(policy.priority_aging_ms) if policy.priority_aging_ms else "off"
    return (f"tenants: {tenants + '; ' if tenants else ''}{others}; priority aging {aging}; "
            f"window {policy.window}")


class SystemCatalog:
    """Reads the ``systems`` topic on demand, at most every ``ttl_s``."""

    def __init__(self, kafka_config: dict[str, Any], topics: Topics, timeout_s: float, ttl_s: float = 5.0) -> None:
        self._kafka, self._topic, self._topics = kafka_config, topics.name("systems"), topics
        self._timeout_s, self._ttl_s = timeout_s, ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[float, list[dict[str, Any]]] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="console-systems")

    def systems(self) -> list[dict[str, Any]]:
        """Each applied system: its current definition and every version still on the topic."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self._ttl_s:
                return self._cached[1]
        try:
            found = self._pool.submit(self._read).result(timeout=self._timeout_s * 3)
        except FutureTimeout:
            raise KafkaUnavailable("Kafka does not answer: cannot read the applied systems") from None
        except Exception as error:  # librdkafka and decoding errors: one line, no trace
            raise KafkaUnavailable(f"cannot read the applied systems: {type(error).__name__}") from None
        with self._lock:
            self._cached = (time.monotonic(), found)
        return found

    def _read(self) -> list[dict[str, Any]]:
        serde = Serde()
        latest: dict[str, SystemDefinition] = {}
        versions: dict[str, list[str]] = {}
        for _partition, key, value in read_to_end(self._kafka, self._topic, group_id="taskplane-console"):
            if value is None:
                latest.pop(key, None)
                continue
            _meta, definition = serde.decode(value)
            if not isinstance(definition, SystemDefinition):
                continue
            name = definition.name
            if key != name:  # a pinned version (key name@version, contract/plans.py): a version, not a system
                seen = versions.setdefault(name, [])
                if definition.version not in seen:
                    seen.append(definition.version)
                continue
            latest[key] = definition
            seen = versions.setdefault(key, [])
            if definition.version not in seen:
                seen.append(definition.version)
        schedules: dict[str, list[dict[str, Any]]] = {}
        for view in read_schedules(self._kafka, self._topics):  # the cron processor's last committed state
            schedules.setdefault(view.system, []).append({k: getattr(view, k) for k in ScheduleView.__slots__})
        return [{**describe(latest[name]), "versions": list(reversed(versions[name])),
                 "schedules": schedules.get(name, [])} for name in sorted(latest)]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
