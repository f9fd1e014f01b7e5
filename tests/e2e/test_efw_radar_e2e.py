"""An early fraud warning's Radar panel in a real browser against `billing-ops demo`: read the Radar
context, refund part of the charge with a reason, then refund the rest and block the card and the
email in one confirmed dialog, undo the email block, and see both refunds in the history."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import choose_option, metric_value, open_page, screenshot, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e


def _dialog(page: Any, name: str) -> Any:
    dialog = page.get_by_role("dialog")
    try:
        dialog.wait_for(timeout=60_000)
    except Exception:
        screenshot(page, f"efw_radar_no_{name}_dialog")
        raise
    return dialog


def test_partial_refund_refund_and_block_undo_history(demo_server: Any, page: Any) -> None:
    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "Early fraud warnings")
    # The seeded warnings are on Stripe's EFW test card: Radar scored them elevated.
    assert metric_value(page, "Risk level") == "elevated"
    assert metric_value(page, "Outcome") == "authorized"
    checks = page.locator("[data-testid='stTable']").filter(has_text="CVC").first.inner_text()
    assert "pass" in checks and "not provided" in checks

    # 1. A partial refund of 1.00 with the reason "duplicate".
    page.get_by_label(re.compile(r"^Partial refund")).fill("1.00")
    choose_option(page, "Refund reason", "duplicate")
    page.get_by_role("button", name="Review partial refund").click()
    wait_until_idle(page)
    dialog = _dialog(page, "partial")
    assert "duplicate" in dialog.inner_text() and "TEST" in dialog.inner_text()
    dialog.get_by_role("button", name="Refund 1.00 USD").click()
    page.wait_for_selector("text=/Refunded 1\\.00 USD/", timeout=60_000)
    wait_until_idle(page)

    # 2. Refund what is left and block the card and the email, in one confirmed action.
    page.get_by_role("button", name="Refund and block…").click()
    wait_until_idle(page)
    dialog = _dialog(page, "refund_and_block")
    assert "fraudulent" in dialog.inner_text()
    dialog.get_by_role("button", name=re.compile(r"^Refund .* and block$")).click()
    page.wait_for_selector("text=/Blocked the email on Radar list console_blocked_emails/", timeout=60_000)
    wait_until_idle(page)
    screenshot(page, "efw_radar_after_refund_and_block")
    blocks = page.locator("[data-testid='stText']", has_text="on @console_blocked_")
    assert blocks.count() == 2 and "active" in blocks.first.inner_text()

    # 3. Undo the email block (the second row: blocks are listed card first, then email).
    page.get_by_role("button", name="Undo").nth(1).click()
    page.wait_for_selector("text=The email is no longer blocked.", timeout=60_000)
    wait_until_idle(page)
    email_block = page.locator("[data-testid='stText']", has_text="on @console_blocked_emails")
    assert "removed" in email_block.inner_text()

    # 4. The history shows both refunds, with their reasons and Stripe's status.
    history = page.locator("[data-testid='stTable']").filter(has_text="sent by").first.inner_text()
    screenshot(page, "efw_radar_history")
    assert "duplicate" in history and "fraudulent" in history and history.count("succeeded") == 2
