"""The payment example with its charge tool made to ignore the idempotency key (the
mistake docs/testing.md walks through): a retry after a crash between the charge and
its journal record charges again. Only for ``taskplane simulate``."""

from __future__ import annotations

from typing import Any

from taskplane import AgentContext, agent, tool
from taskplane.testing import SimulationResult, invariant
from taskplane.testing.fakes import FakeBank, FakeTable

BANK = FakeBank()
LEDGER = FakeTable()


@tool("stripe.charge")
def charge(amount: int, currency: str, customer: str, order: str | None = None) -> dict[str, Any]:
    return BANK.charge(amount, currency, customer, order=order)  # no idempotency key: a new charge each call


@tool("ledger.record")
def record(charge_id: str, amount: int, currency: str, run_id: str) -> dict[str, Any]:
    inserted = LEDGER.insert(charge_id, {"run_id": run_id, "amount": amount, "currency": currency})
    return {"charge_id": charge_id, "recorded": inserted}


@agent("payment-processor")
def payment_processor(ctx: AgentContext) -> dict[str, Any]:
    order = ctx.run_input
    paid = ctx.call_tool("stripe.charge", amount=order["amount"], currency=order.get("currency", "usd"),
                         customer=order.get("customer", "anonymous"), order=order.get("order", ctx.run_id))
    entry = ctx.call_tool("ledger.record", charge_id=paid["id"], amount=paid["amount"],
                          currency=paid["currency"], run_id=ctx.run_id)
    return {"charge": paid["id"], "ledger": entry}


@invariant
def one_charge_per_order(result: SimulationResult) -> None:
    twice = BANK.charged_more_than_once()
    assert not twice, f"charged more than once: orders {', '.join(twice[:10])}"
