"""payment-processor: stripe.charge then ledger.record, against the local fakepay.

Run input: ``{"amount": 1250, "currency": "usd", "customer": "cus_42"}`` (and an optional
``"order"`` id; the run id otherwise). The charge is sent with the call's idempotency
key, so a retry after a crash between the charge and its journal record is answered by
fakepay with the first charge, and the ledger insert is keyed by the charge id: each
happens once. Under ``taskplane simulate`` both go to in-memory fakes, and the invariant
``one_charge_per_order`` is checked after each seed (docs/testing.md).
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

from taskplane import AgentContext, agent, tool
from taskplane._examples.db import database_url, ensure_table
from taskplane.testing import SimulationResult, invariant, simulating
from taskplane.testing.fakes import FakeBank, FakeTable

# Simulated: an in-memory bank and ledger, new for each seed (the module is imported afresh).
BANK = FakeBank() if simulating() else None
LEDGER = FakeTable() if simulating() else None


def fakepay_url() -> str:
    return os.environ.get("TASKPLANE_FAKEPAY_URL", "http://127.0.0.1:8402")


@tool("stripe.charge", network=True, env=("TASKPLANE_FAKEPAY_URL",))
def charge(amount: int, currency: str, customer: str, idempotency_key: str,
           order: str | None = None, traceparent: str | None = None) -> dict[str, Any]:
    if BANK is not None:
        return BANK.charge(amount, currency, customer, idempotency_key=idempotency_key, order=order)
    request = urllib.request.Request(
        f"{fakepay_url()}/charges", method="POST",
        data=json.dumps({"amount": amount, "currency": currency, "customer": customer, "order": order}).encode(),
        # traceparent: fakepay's side of the call joins the run's trace (docs/tracing.md)
        headers={"Content-Type": "application/json", "Idempotency-Key": idempotency_key,
                 **({"traceparent": traceparent} if traceparent else {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


@tool("ledger.record", env=("TASKPLANE_DATABASE_URL",))
def record(charge_id: str, amount: int, currency: str, run_id: str) -> dict[str, Any]:
    if LEDGER is not None:
        new = LEDGER.insert(charge_id, {"run_id": run_id, "amount": amount, "currency": currency})
        return {"charge_id": charge_id, "recorded": new}
    import psycopg

    with psycopg.connect(database_url(), autocommit=True) as conn:
        ensure_table(conn, "ledger", "CREATE TABLE IF NOT EXISTS ledger (charge_id text PRIMARY KEY, "
                     "run_id text NOT NULL, amount bigint NOT NULL, currency text NOT NULL, "
                     "recorded_at timestamptz NOT NULL DEFAULT now())")
        inserted = conn.execute("INSERT INTO ledger (charge_id, run_id, amount, currency) VALUES (%s, %s, %s, %s) "
                                "ON CONFLICT (charge_id) DO NOTHING RETURNING charge_id",
                                (charge_id, run_id, amount, currency)).fetchone()
    return {"charge_id": charge_id, "recorded": inserted is not None}


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
    """Each order is charged once at most, and a paid run reports a charge the bank made."""
    assert BANK is not None and LEDGER is not None
    twice = BANK.charged_more_than_once()
    assert not twice, f"charged more than once: orders {', '.join(twice[:10])}"
    made = {charge["id"] for charge in BANK.charges}
    for run in result.runs:
        if run.status == "succeeded":
            paid = run.outputs["payment-processor"]["charge"]
            assert paid in made, f"run {run.run_id} reports charge {paid}, which the bank never made"
