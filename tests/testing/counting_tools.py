"""A one-agent system whose tool counts its calls in module state: the invariant holds
only if the simulator imports the module afresh for each seed."""

from __future__ import annotations

from typing import Any

from taskplane import AgentContext, agent, tool
from taskplane.testing import SimulationResult, invariant

CALLS: list[str] = []


@tool("stripe.charge")
def charge(amount: int, currency: str, customer: str, order: str | None = None) -> dict[str, Any]:
    CALLS.append(customer)
    return {"id": f"ch_{len(CALLS)}", "amount": amount, "currency": currency}


@tool("ledger.record")
def record(charge_id: str, amount: int, currency: str, run_id: str) -> dict[str, Any]:
    return {"charge_id": charge_id, "recorded": True}


@agent("payment-processor")
def payment_processor(ctx: AgentContext) -> dict[str, Any]:
    paid = ctx.call_tool("stripe.charge", amount=1, currency="usd", customer=ctx.run_id)
    entry: dict[str, Any] = ctx.call_tool("ledger.record", charge_id=paid["id"], amount=1, currency="usd",
                                          run_id=ctx.run_id)
    return entry


@invariant
def module_state_is_this_seeds(result: SimulationResult) -> None:
    executed = [e for e in result.executions if e.tool == "stripe.charge"]
    assert len(CALLS) == len(executed), f"{len(CALLS)} calls counted, {len(executed)} in this seed"
