"""The webhook delivery log in a real browser against `billing-ops demo`: a poison event arrives
(signed like Stripe's, with a payload no handler can apply), ops filter the log down to it, read
its payload with the secret redacted, mark it resolved with a reason, then send a test event and
see it arrive through the emulator."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.request
from typing import Any

import pytest
from dotenv import dotenv_values
from sqlalchemy import create_engine, text

from tests.e2e.conftest import open_page, press, screenshot, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e

POISON_EVENT = "evt_e2e_poison"
POISON_CHARGE = "ch_e2e_poison"
SECRET_IN_PAYLOAD = "whsec_e2eNOTSHOWNsecret0123"


def _deliver_poison(demo: Any) -> None:
    """A charge.succeeded whose `created` is not a timestamp: verified and stored, then every
    processing attempt fails (the kind of event that needs "mark resolved")."""
    secret = str(dotenv_values(demo.data_dir / "demo.env")["STRIPE_WEBHOOK_SECRETS"]).split(",")[0]
    event = {"id": POISON_EVENT, "object": "event", "type": "charge.succeeded", "created": int(time.time()),
             "livemode": False, "api_version": "2026-10-28.endive",
             "data": {"object": {"id": POISON_CHARGE, "object": "charge", "amount": 500, "currency": "usd",
                                 "created": "soon", "description": f"order note {SECRET_IN_PAYLOAD}"}}}
    body = json.dumps(event).encode()
    ts = int(time.time())
    signature = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(demo.webhook_url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Stripe-Signature": f"t={ts},v1={signature}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (the demo on loopback)
        assert response.status == 200


def _event_status(demo: Any, event_id: str) -> str | None:
    engine = create_engine(f"sqlite:///{demo.data_dir}/billing_ops.db")
    with engine.connect() as conn:
        status = conn.execute(text("select status from stripe_events where id = :id"), {"id": event_id}).scalar()
    engine.dispose()
    return None if status is None else str(status)


def test_filter_the_log_read_a_payload_resolve_a_poison_event_and_send_a_test_event(demo_server: Any,
                                                                                     page: Any) -> None:
    _deliver_poison(demo_server)
    deadline = time.monotonic() + 30
    while _event_status(demo_server, POISON_EVENT) != "failed" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _event_status(demo_server, POISON_EVENT) == "failed"

    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "Webhooks")
    page.get_by_text("Delivery log", exact=True).wait_for()
    page.get_by_label("Object or event id").fill(POISON_CHARGE)
    page.get_by_role("button", name="Apply log filters").click()
    wait_until_idle(page)
    page.wait_for_function("() => location.search.includes('log_object=ch_e2e_poison')")
    page.wait_for_selector("text=Rows 1–1 of 1", timeout=60_000)
    payload = page.locator("[data-testid='stCode']").filter(has_text=POISON_EVENT).first
    payload.wait_for()
    shown = payload.inner_text()
    assert POISON_CHARGE in shown and SECRET_IN_PAYLOAD not in shown and "[redacted]" in shown
    assert SECRET_IN_PAYLOAD not in page.content()
    screenshot(page, "webhook_log_poison_event")

    page.get_by_label("Reason (kept in the audit log)").fill("malformed charge from a test script; nothing to apply")
    page.get_by_role("button", name="Mark resolved").click()
    page.wait_for_selector(f"text=Marked {POISON_EVENT} resolved", timeout=60_000)
    wait_until_idle(page)
    assert _event_status(demo_server, POISON_EVENT) == "resolved"

    page.get_by_role("button", name="Send test event").click()
    try:
        page.wait_for_selector("text=Test event arrived", timeout=90_000)
    except Exception:
        screenshot(page, "webhook_test_event_not_arrived")
        raise AssertionError(page.locator("[data-testid='stMain']").inner_text()[-3000:]) from None
    arrived = page.locator("[data-testid='stAlert']").filter(has_text="Test event arrived").first.inner_text()
    assert "charge.succeeded" in arrived and "verified with key" in arrived
    event_id = next(word for word in arrived.replace("(", " ").split() if word.startswith("evt_"))
    screenshot(page, "webhook_test_event_arrived")
    # It is in the log too: filtered to its event id, one row from a webhook delivery.
    page.get_by_label("Object or event id").fill(event_id)
    page.get_by_role("button", name="Apply log filters").click()
    wait_until_idle(page)
    page.wait_for_selector("text=Rows 1–1 of 1", timeout=60_000)
    assert _event_status(demo_server, event_id) in ("processed", "pending", "processing")
    # The resolved poison event stays resolved: the worker never took it again.
    assert _event_status(demo_server, POISON_EVENT) == "resolved"


def test_the_secret_roll_stepper_checks_each_step(demo_server: Any, page: Any) -> None:
    """The demo's receiver holds one secret, so the first step is refused until a new one is added;
    the stepper's state survives a reload (it is kept in the database)."""
    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "Webhooks")
    press(page, "Start a secret roll", "Roll started")
    press(page, "Check: add the new secret", "still holds only the old secret")
    screenshot(page, "webhook_secret_roll_step_1")
    page.reload()
    page.wait_for_selector("h1:has-text('Webhooks')", timeout=120_000)
    page.get_by_role("button", name="Check: add the new secret").wait_for()
    assert "whsec_" not in page.content()
    page.get_by_text("Cancel this roll").click()
    page.get_by_label("Why").fill("demo run only")
    page.get_by_role("button", name="Cancel the roll").click()
    page.wait_for_selector("text=Roll cancelled", timeout=60_000)
