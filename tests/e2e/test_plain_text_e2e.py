"""In a real browser against `billing-ops demo`: a customer whose name is a Markdown image, a fake
"re-verify" link, an HTML tag and emphasis is shown on the Disputes page exactly as typed; the
browser renders no image or link from it and never asks evil.test for anything."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import open_page, screenshot, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e

HOSTILE = ("![x](http://evil.test/pixel.png) [Session expired — click to re-verify](http://evil.test/login) "
           "<img src=x onerror=alert(1)> **bold**")


def _hostile_dispute(demo_server: Any) -> str:
    """A customer with the hostile name disputes a charge; the demo's webhooks bring it in."""
    from sqlalchemy import create_engine, text

    from demo import DEMO_API_KEY
    from services.config import load_settings
    from services.stripe_gateway import StripeGateway

    gateway = StripeGateway(load_settings({"STRIPE_API_KEY": DEMO_API_KEY, "STRIPE_API_BASE": demo_server.emulator_url,
                                           "STRIPE_RATE_LIMIT_PER_SECOND": "100"}, env_file=None))
    customer = gateway.create_customer({"email": "hostile.name@example.io", "name": HOSTILE},
                                       idempotency_key="e2e-hostile-customer")
    intent = gateway.client.v1.payment_intents.create({"amount": 4900, "currency": "usd", "customer": customer["id"],
                                                       "payment_method": "pm_card_createDispute", "confirm": True})
    engine = create_engine(f"sqlite:///{demo_server.data_dir}/billing_ops.db")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                found = conn.execute(text("select d.id from disputes d join customers c on c.id = d.stripe_customer_id "
                                          "where d.charge_id = :charge and c.name = :name"),
                                     {"charge": intent.latest_charge, "name": HOSTILE}).scalar()
            if found:
                return str(found)
            time.sleep(1)
    finally:
        engine.dispose()
    pytest.fail("the hostile customer's dispute never reached the billing DB")


def test_hostile_customer_name_renders_as_plain_text(demo_server: Any, page: Any) -> None:
    dispute_id = _hostile_dispute(demo_server)
    evil_requests: list[str] = []
    page.on("request", lambda request: evil_requests.append(request.url) if "evil.test" in request.url else None)
    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "Disputes")
    page.get_by_role("textbox", name="Customer email contains").fill("hostile.name@")
    page.get_by_role("button", name="Apply filters").click()
    wait_until_idle(page)
    page.get_by_role("link", name="Open in Stripe").wait_for(timeout=60_000)
    assert dispute_id in (page.get_by_role("link", name="Open in Stripe").get_attribute("href") or "")
    # The customer card's name and email are a plain-text element (st.text).
    card = page.locator("[data-testid='stText']", has_text="Session expired").first
    card.wait_for(timeout=60_000)
    screenshot(page, "plain_text_customer")
    # Exactly as typed (invisible word joiners keep the URLs from being autolinked).
    assert HOSTILE in " ".join(card.inner_text().replace("\u2060", "").split())
    assert page.locator("img[src*='evil.test']").count() == 0
    assert page.locator("a[href*='evil.test']").count() == 0
    assert card.locator("img, a:not([href^='mailto:']), strong:has-text('bold')").count() == 0
    assert not evil_requests, evil_requests
