"""In-memory stand-ins for the services the examples call, for ``taskplane simulate`` and
users' tests: a payment service with idempotency keys (fakepay's rules) and a table
with upserts. A tool module holds them at module level, chosen when ``simulating()``;
the simulator imports the module afresh for each seed, so each seed starts empty."""

from __future__ import annotations

from collections import Counter
from typing import Any


class FakeBank:
    """Charges as fakepay stores them: a repeated idempotency key answers the first charge
    and charges nothing; a charge without a key is always a new one."""

    def __init__(self) -> None:
        self.charges: list[dict[str, Any]] = []
        self._by_key: dict[str, dict[str, Any]] = {}

    def charge(self, amount: int, currency: str, customer: str, *, idempotency_key: str | None = None,
               order: str | None = None) -> dict[str, Any]:
        if idempotency_key is not None and idempotency_key in self._by_key:
            return {**self._by_key[idempotency_key], "replayed": True}
        charge = {"id": f"ch_{len(self.charges) + 1:06d}", "amount": int(amount), "currency": currency,
                  "customer": customer, "order": order, "replayed": False}
        self.charges.append(charge)
        if idempotency_key is not None:
            self._by_key[idempotency_key] = charge
        return dict(charge)

    def charged_more_than_once(self) -> list[str]:
        """Orders with more than one charge."""
        counts = Counter(charge["order"] for charge in self.charges)
        return sorted(str(order) for order, n in counts.items() if n > 1)


class FakeTable:
    """Rows by key: ``insert`` keeps the first row (ON CONFLICT DO NOTHING), ``upsert`` the
    last; ``writes`` counts every write asked for."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.writes = 0

    def insert(self, key: str, row: dict[str, Any]) -> bool:
        self.writes += 1
        if key in self.rows:
            return False
        self.rows[key] = dict(row)
        return True

    def upsert(self, key: str, row: dict[str, Any]) -> None:
        self.writes += 1
        self.rows[key] = dict(row)
