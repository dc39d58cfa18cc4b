"""The demo's payment-processor: the example's stripe.charge and ledger.record, plus
two things the demo needs to show recovery on cue.

- ``risk.check`` refuses a customer with a row in ``demo_account_holds`` (a cause an
  operator can fix: delete the hold, then replay the dead letter).
- ``pause_after_charge_s`` in the run input makes the first attempt wait between the
  charge and the ledger record: the window in which the demo SIGKILLs the worker.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from taskplane._examples.db import database_url
from taskplane._examples.payment_processor import tools as _example
from taskplane.workers.sdk import AgentContext, agent, tool

HOLDS = "CREATE TABLE IF NOT EXISTS demo_account_holds (customer text PRIMARY KEY, reason text NOT NULL)"


@tool("stripe.charge", network=True, env=("TASKPLANE_FAKEPAY_URL",))
def charge(amount: int, currency: str, customer: str, idempotency_key: str) -> dict[str, Any]:
    result: dict[str, Any] = _example.charge(amount, currency, customer, idempotency_key)
    return result


@tool("ledger.record", env=("TASKPLANE_DATABASE_URL",))
def record(charge_id: str, amount: int, currency: str, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = _example.record(charge_id, amount, currency, run_id)
    return result


@tool("risk.check", env=("TASKPLANE_DATABASE_URL",))
def risk_check(customer: str) -> dict[str, Any]:
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(HOLDS)
        row = conn.execute("SELECT reason FROM demo_account_holds WHERE customer = %s", (customer,)).fetchone()
    if row is not None:
        raise RuntimeError(f"account {customer} is on hold: {row[0]}")
    return {"customer": customer, "cleared": True}


def place_hold(url: str, customer: str, reason: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(HOLDS)
        conn.execute("INSERT INTO demo_account_holds VALUES (%s, %s) ON CONFLICT (customer) DO UPDATE "
                     "SET reason = EXCLUDED.reason", (customer, reason))


def lift_hold(url: str, customer: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(HOLDS)
        conn.execute("DELETE FROM demo_account_holds WHERE customer = %s", (customer,))


@agent("payment-processor")
def payment_processor(ctx: AgentContext) -> dict[str, Any]:
    order = ctx.run_input
    customer = order.get("customer", "anonymous")
    ctx.call_tool("risk.check", customer=customer)
    paid = ctx.call_tool("stripe.charge", amount=order["amount"], currency=order.get("currency", "usd"),
                         customer=customer)
    pause = float(order.get("pause_after_charge_s", 0))
    if pause and ctx.attempt == 1:
        time.sleep(pause)  # the lease keeps renewing; a SIGKILL here leaves a charged, unrecorded payment
    entry = ctx.call_tool("ledger.record", charge_id=paid["id"], amount=paid["amount"],
                          currency=paid["currency"], run_id=ctx.run_id)
    return {"charge": paid["id"], "ledger": entry}
