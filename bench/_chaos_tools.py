"""The agent bench.chaos runs: the payment example (fakepay charge, ledger record)
behind a flaky fraud check that fails a share of its calls (``TASKPLANE_CHAOS_FLAKY``,
default 0.2), so retries and the breaker are exercised while components die."""

from __future__ import annotations

import os
import random
import time
from typing import Any

from taskplane.workers.loader import load_user_module
from taskplane.workers.sdk import AgentContext, agent, tool

_example = load_user_module(None, "payment-processor")


@tool("fraud.score", env=("TASKPLANE_CHAOS_FLAKY",))
def fraud_score(customer: str) -> dict[str, Any]:
    started = time.time()  # the limited tool: bench.chaos checks its calls never overlapped past the cap
    if random.random() < float(os.environ.get("TASKPLANE_CHAOS_FLAKY", "0.2")):
        raise RuntimeError("fraud service unavailable (503)")
    time.sleep(0.02)
    return {"customer": customer, "score": 0.1, "started": started, "ended": time.time()}


@tool("stripe.charge", network=True, env=("TASKPLANE_FAKEPAY_URL",))
def charge(amount: int, currency: str, customer: str, idempotency_key: str) -> dict[str, Any]:
    result: dict[str, Any] = _example.charge(amount, currency, customer, idempotency_key)
    return result


@tool("ledger.record", env=("TASKPLANE_DATABASE_URL",))
def record(charge_id: str, amount: int, currency: str, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = _example.record(charge_id, amount, currency, run_id)
    return result


@agent("payment-processor")
def payment_processor(ctx: AgentContext) -> dict[str, Any]:
    order = ctx.run_input
    ctx.call_tool("fraud.score", customer=order["customer"])
    paid = ctx.call_tool("stripe.charge", amount=order["amount"], currency="usd", customer=order["customer"])
    entry = ctx.call_tool("ledger.record", charge_id=paid["id"], amount=paid["amount"],
                          currency=paid["currency"], run_id=ctx.run_id)
    return {"charge": paid["id"], "ledger": entry}
