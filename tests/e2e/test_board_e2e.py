"""The first-24h board in a real browser against `billing-ops demo`: change the range, see a
chart and an alert (forged webhooks trip the invalid-signature alert), take a snapshot."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import open_page, screenshot, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e


def test_board_range_alert_and_snapshot(demo_server: Any, page: Any) -> None:
    for _ in range(12):  # the default alert threshold is 10 invalid signatures an hour
        response = httpx.post(demo_server.webhook_url, content=b'{"id": "evt_forged"}',
                              headers={"Stripe-Signature": "t=1,v1=forged"})
        assert response.status_code == 400
    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "First 24 hours")
    page.get_by_text("7 d", exact=True).click()
    wait_until_idle(page)
    page.wait_for_selector("text=Invalid webhook signatures")
    assert page.locator(".js-plotly-plot").count() > 0
    page.get_by_role("button", name="Take snapshot").click()
    page.wait_for_selector("text=/Snapshot \\d+ saved/", timeout=60_000)
    screenshot(page, "board_with_alert_and_snapshot")
