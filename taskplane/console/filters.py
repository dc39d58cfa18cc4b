"""Query-string filters of the runs and dead-letter lists, parsed once, refused with a reason.

A keyset cursor is the (submitted_ms, run_id) of the last row shown, written
``<ms>~<run_id>``: the next page starts strictly after it in (submitted_ms DESC, run_id DESC).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from taskplane.console.errors import BadRequest
from taskplane.contract.scheduling import tenant_problem
from taskplane.readmodel import RUN_STATUSES

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_CURSOR = re.compile(r"^(\d{1,16})~([A-Za-z0-9._:-]{1,200})$")
_RELATIVE = re.compile(r"^(\d{1,6})([mhd])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_SEARCH = 200


@dataclass(frozen=True, slots=True)
class Cursor:
    submitted_ms: int
    run_id: str

    def __str__(self) -> str:
        return f"{self.submitted_ms}~{self.run_id}"


@dataclass(frozen=True, slots=True)
class RunFilter:
    system: str | None = None
    statuses: tuple[str, ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    search: str | None = None
    after: Cursor | None = None
    limit: int = 50
    tenant: str | None = None  # docs/scheduling.md

    def query(self, after: Cursor | None = None, raw: Mapping[str, str] | None = None) -> str:
        """The query string of this filter (optionally from another cursor)."""
        pairs: list[tuple[str, str]] = []
        if self.system:
            pairs.append(("system", self.system))
        pairs += [("status", s) for s in self.statuses]
        for key in ("since", "until"):
            if raw and raw.get(key):
                pairs.append((key, raw[key]))
        if self.search:
            pairs.append(("q", self.search))
        if self.tenant:
            pairs.append(("tenant", self.tenant))
        if after is not None:
            pairs.append(("after", str(after)))
        return urlencode(pairs)


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    system: str | None = None
    error_contains: str | None = None
    include_replayed: bool = False

    def query(self) -> str:
        pairs = [(k, v) for k, v in (("system", self.system), ("error", self.error_contains)) if v]
        if self.include_replayed:
            pairs.append(("all", "1"))
        return urlencode(pairs)


def parse_time(field: str, value: str, now_ms: int) -> int:
    """An ISO 8601 time with a zone, or a span back from now: ``15m``, ``24h``, ``7d``."""
    relative = _RELATIVE.match(value)
    if relative:
        return now_ms - int(relative.group(1)) * _UNIT_MS[relative.group(2)]
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(field, f"not an ISO 8601 time or a span like 24h: {value!r}") from None
    if parsed.tzinfo is None:
        raise BadRequest(field, f"give a time zone (e.g. 2025-01-31T10:00:00Z), got {value!r}")
    return int(parsed.timestamp() * 1000)


def _one(params: Mapping[str, Sequence[str]], field: str) -> str | None:
    values = [v for v in params.get(field, ()) if v != ""]
    if len(values) > 1:
        raise BadRequest(field, "given more than once")
    return values[0] if values else None


def _system(params: Mapping[str, Sequence[str]]) -> str | None:
    system = _one(params, "system")
    if system is not None and not _NAME.match(system):
        raise BadRequest("system", f"not a system name: {system!r}")
    return system


def parse_run_filter(params: Mapping[str, Sequence[str]], now_ms: int, page_size: int) -> RunFilter:
    statuses: list[str] = []
    for value in params.get("status", ()):
        for status in (s.strip() for s in value.split(",")):
            if not status:
                continue
            if status not in RUN_STATUSES:
                raise BadRequest("status", f"unknown status {status!r} (one of {', '.join(RUN_STATUSES)})")
            if status not in statuses:
                statuses.append(status)
    since_text, until_text = _one(params, "since"), _one(params, "until")
    since = parse_time("since", since_text, now_ms) if since_text else None
    until = parse_time("until", until_text, now_ms) if until_text else None
    if since is not None and until is not None and since >= until:
        raise BadRequest("until", "must be later than since")
    search = _one(params, "q")
    if search is not None:
        search = search.strip() or None
    if search is not None and len(search) > MAX_SEARCH:
        raise BadRequest("q", f"at most {MAX_SEARCH} characters")
    cursor_text = _one(params, "after")
    after = None
    if cursor_text is not None:
        match = _CURSOR.match(cursor_text)
        if match is None:
            raise BadRequest("after", f"not a cursor from this console: {cursor_text!r}")
        after = Cursor(int(match.group(1)), match.group(2))
    limit_text = _one(params, "limit")
    limit = page_size
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 500:
            raise BadRequest("limit", f"a whole number from 1 to 500, got {limit_text!r}")
        limit = int(limit_text)
    tenant = _one(params, "tenant")
    if tenant is not None and (problem := tenant_problem(tenant)) is not None:
        raise BadRequest("tenant", problem)
    unknown = sorted(set(params) - {"system", "status", "since", "until", "q", "after", "limit", "tenant"})
    if unknown:
        raise BadRequest(unknown[0], "unknown filter (system, status, since, until, q, after, limit, tenant)")
    return RunFilter(_system(params), tuple(statuses), since, until, search, after, limit, tenant or None)


def parse_dead_letter_filter(params: Mapping[str, Sequence[str]]) -> DeadLetterFilter:
    unknown = sorted(set(params) - {"system", "error", "all", "csrf"})
    if unknown:
        raise BadRequest(unknown[0], "unknown filter (system, error, all)")
    error = _one(params, "error")
    if error is not None and len(error) > MAX_SEARCH:
        raise BadRequest("error", f"at most {MAX_SEARCH} characters")
    include = _one(params, "all")
    if include not in (None, "0", "1"):
        raise BadRequest("all", f"0 or 1, got {include!r}")
    return DeadLetterFilter(_system(params), error.strip() or None if error else None, include == "1")
