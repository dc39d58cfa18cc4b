"""The web console in a real browser over the real stack: Kafka, Postgres, the
processors, a worker process and ``taskplane ui`` as its own process.

A payment is watched turning green on its run page; a payment dead-lettered by an
account hold (its error and input hold ``<script>``) is replayed by clicking: refused
without the token, then, logged in and with the hold lifted, accepted, and the run
succeeds; a second replay shows the orchestrator's refusal; a running payment is
cancelled from its run page. Screenshots of each page
go to $TASKPLANE_CONSOLE_SCREENSHOTS (``make screenshots``: docs/console/).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskplane.contract import messages as m
from taskplane.demo.payments import lift_hold, place_hold
from taskplane.demo.run import DEMO_EXECUTION, RISK_CHECK, _create_tables
from taskplane.testing import example_manifest, manifest_with
from tests.e2e.console_stack import ConsoleProcess, browser_page, screenshot_dir
from tests.e2e.e2e_pipeline import Pipeline

__all__ = ["browser_page"]
pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
TOKEN = "console-e2e-token"
SECRET = "hunter2-in-the-manifest"
XSS = "<script>window.__xss = 1</script>"
WAIT_MS = 60_000


def _payments_manifest() -> str:
    data = yaml.safe_load(manifest_with(example_manifest("payment-processor"), DEMO_EXECUTION,
                                        {"payment-processor": [RISK_CHECK]}))
    data["spec"]["persistence"]["connectionString"] = f"postgresql://app:{SECRET}@db:5432/payments"
    return str(yaml.safe_dump(data, sort_keys=False))


def _api(console: ConsoleProcess, path: str, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"{console.url}{path}", method=method,
                                     headers={"authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_console_in_a_real_browser(pipeline: Pipeline, fakepay: str, browser_page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser_page
    shots = screenshot_dir(tmp_path)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    plan = pipeline.define(_payments_manifest())
    _create_tables(pipeline.database_url)
    place_hold(pipeline.database_url, "cust-held", f"chargeback under review {XSS}")
    console = ConsoleProcess({**pipeline.env, "TASKPLANE_UI_TOKEN": TOKEN,
                              "TASKPLANE_UI_READ_MODEL_SCHEMA": pipeline.schema}, tmp_path / "console.log")
    try:
        pipeline.worker("w1", {"payment-processor": "taskplane.demo.payments"})
        console.wait_ready()

        # A payment turns green on its run page (the page follows it live).
        paid = pipeline.publisher.submit_run(plan, {"amount": 500, "customer": "cust-ok"})
        held = pipeline.publisher.submit_run(plan, {"amount": 1200, "customer": "cust-held", "note": XSS})
        pipeline.publisher.flush()
        page.goto(f"{console.url}/runs")
        page.locator(f'tr[data-run="{paid}"] a').click(timeout=WAIT_MS)
        expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
        expect(page.locator('g.task[data-status="succeeded"]')).to_have_count(1)
        expect(page.locator("section.task h3", has_text="Journal")).to_have_count(1)
        page.screenshot(path=str(shots / "run.png"), full_page=True)
        page.goto(f"{console.url}/runs")
        page.screenshot(path=str(shots / "runs.png"), full_page=True)

        # The held payment is dead-lettered; its error and input are shown as text.
        page.goto(f"{console.url}/dead-letters")
        row = page.locator(f'tr[data-run="{held}"]')
        expect(row).to_have_count(1, timeout=WAIT_MS)
        expect(row.locator("td.error")).to_contain_text(XSS)
        page.screenshot(path=str(shots / "dead-letters.png"), full_page=True)
        page.goto(f"{console.url}/")
        expect(page.locator("#open-dead-letters")).to_have_text("1")
        page.screenshot(path=str(shots / "overview.png"), full_page=True)
        page.goto(f"{console.url}/dead-letters/{held}/payment-processor")
        expect(page.locator("#cause")).to_contain_text(XSS)
        page.screenshot(path=str(shots / "dead-letter.png"), full_page=True)

        # Replay: preview, then confirm, refused without the token.
        page.locator("#replay").click()
        expect(page.locator("#preview .unblocks")).to_have_text("nothing downstream is blocked")
        page.screenshot(path=str(shots / "replay-preview.png"), full_page=True)
        page.locator("#confirm-replay").click()
        expect(page.locator("#error-message")).to_contain_text("log in first")
        status, letter = _api(console, f"/api/dead-letters/{held}/payment-processor")
        assert status == 200 and letter["dead_letter"]["status"] == "open"
        assert not pipeline.log.events(m.TaskReplayed, held)

        # Fix the cause, log in, replay by clicking: accepted, and the payment succeeds.
        lift_hold(pipeline.database_url, "cust-held")
        page.get_by_text("Log in with the console token").click()
        page.screenshot(path=str(shots / "login.png"), full_page=True)
        page.locator('input[name="token"]').fill(TOKEN)
        page.locator("#login").click()
        page.locator("#confirm-replay").click()
        expect(page.locator("#outcomes tr.accepted")).to_contain_text(f"{held}/payment-processor replayed")
        page.screenshot(path=str(shots / "replay-outcome.png"), full_page=True)
        page.locator("a.watch").click()
        expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
        expect(page.locator("#run-input")).to_contain_text(XSS)

        # Replaying it again: the orchestrator's refusal, shown as it said it.
        page.goto(f"{console.url}/runs/{held}/tasks/payment-processor/replay")
        page.locator("#confirm-replay").click()
        expect(page.locator("#outcomes tr.rejected")).to_contain_text("refused by the orchestrator")
        rejection = pipeline.log.events(m.CommandRejected, held)[-1]
        expect(page.locator("#outcomes tr.rejected")).to_contain_text(rejection.reason)
        status, body = _api(console, f"/api/runs/{held}/tasks/payment-processor/replay", "POST", TOKEN)
        assert status == 409 and body["accepted"] is False

        # Cancel a payment that is still running (its worker pauses after the charge).
        slow = pipeline.publisher.submit_run(plan, {"amount": 700, "customer": "cust-slow",
                                                    "pause_after_charge_s": 20})
        pipeline.publisher.flush()
        pipeline.wait(lambda log: log.events(m.ToolCallSucceeded, slow))
        page.goto(f"{console.url}/runs")
        page.locator(f'tr[data-run="{slow}"] a').click(timeout=WAIT_MS)
        expect(page.locator('g.task[data-status="leased"]')).to_have_count(1, timeout=WAIT_MS)
        page.get_by_text("Cancel run…").click()
        page.locator("#confirm-cancel").click()
        expect(page.locator("#outcomes tr.accepted")).to_contain_text(f"run {slow} cancelled")
        page.locator("a.watch").click()
        expect(page.locator("#run-status")).to_have_attribute("data-status", "cancelled", timeout=WAIT_MS)

        # The systems page: the applied manifest without its secret.
        page.goto(f"{console.url}/systems")
        expect(page.locator("#system-payment-processor")).to_have_count(1)
        page.locator("#system-payment-processor summary").click()
        page.screenshot(path=str(shots / "systems.png"), full_page=True)
        assert SECRET not in page.content()
        assert pipeline.database_url.split("@")[-1] not in page.content()
        assert dialogs == []
        assert page.evaluate("window.__xss") is None
    finally:
        console.stop()
