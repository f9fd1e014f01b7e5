"""Early fraud warnings in a real browser against `billing-ops demo`: refund one, ignore
another, see both decisions land and the funnel move."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import metric_value, open_page, screenshot, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e


def test_refund_one_ignore_another(demo_server: Any, page: Any) -> None:
    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "Early fraud warnings")
    refunded_before = int(metric_value(page, "Refunded"))
    ignored_before = int(metric_value(page, "Ignored"))

    page.get_by_role("button", name="Refund full amount…").click()
    wait_until_idle(page)
    dialog = page.get_by_role("dialog")
    try:
        dialog.wait_for(timeout=60_000)
    except Exception:
        screenshot(page, "efw_no_dialog")
        raise
    assert "TEST" in dialog.inner_text()
    dialog.get_by_role("button", name="Refund", exact=False).click()
    page.wait_for_selector("text=/Refunded \\d/", timeout=60_000)
    wait_until_idle(page)

    page.get_by_label("Reason for ignoring").fill("Customer confirmed the purchase by phone")
    page.get_by_role("button", name="Mark as ignored").click()
    page.wait_for_selector("text=/Marked issfr_\\w+ as ignored/", timeout=60_000)
    wait_until_idle(page)
    screenshot(page, "efw_after_decisions")

    assert int(metric_value(page, "Refunded")) == refunded_before + 1
    assert int(metric_value(page, "Ignored")) == ignored_before + 1
