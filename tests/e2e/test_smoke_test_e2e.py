"""The guided live smoke test in a real browser against `billing-ops demo` (issue 24 part 3), then
the First-24h launch figures (part 4) checked against the data behind them: an admin creates the
Checkout Session (URL and QR code), the emulator's documented helper completes it, the event comes
in through the receiver, the page runs its checks, the admin refunds and cancels, the checklist is
ticked; Stripe's side is read back through the SDK."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.e2e.conftest import ARTIFACTS, metric_value, open_page, screenshot, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e
TIMEOUT_MS = 120_000


def _demo_runtime(demo: Any) -> Any:
    from services.config import load_settings
    from services.runtime import Runtime

    return Runtime(load_settings(env_file=str(demo.data_dir / "demo.env")))


def _complete_checkout(demo: Any, session_id: str) -> None:
    request = urllib.request.Request(f"{demo.emulator_url}/_emulator/checkout/sessions/{session_id}/complete",
                                     data=json.dumps({"payment_method": "pm_card_visa"}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:  # loopback only
        assert response.status == 200


def _wait_for_subscription(rt: Any, subscription_id: str, timeout_s: float = 60) -> None:
    """Until the receiver has stored and processed the sign-up (the demo processes inline)."""
    import time

    from db.models import UserSubscription

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with rt.uow() as uow:
            if uow.session.execute(select(UserSubscription.id).where(
                    UserSubscription.stripe_subscription_id == subscription_id)).first():
                return
        time.sleep(0.5)
    raise AssertionError(f"{subscription_id} never reached the billing DB")


def _metric_values_after_reloads(page: Any, label: str, expected: str, timeout_s: float = 60) -> list[str]:
    """Every st.metric with `label` on the page (a frozen snapshot may show one too), reloading
    the page until one reads `expected` or the time is up (a render can lag a fresh write)."""
    deadline = time.monotonic() + timeout_s
    while True:
        metrics = page.locator("[data-testid='stMetric']", has_text=label)
        values = [str(metrics.nth(i).locator("[data-testid='stMetricValue']").inner_text()).strip()
                  for i in range(metrics.count())]
        if expected in values or time.monotonic() > deadline:
            return values
        page.reload()
        page.wait_for_selector("text=Launch figures (runbook §13)", timeout=TIMEOUT_MS)
        wait_until_idle(page)


def test_smoke_test_end_to_end_then_the_launch_figures(demo_server: Any, page: Any) -> None:
    from db.models import ChecklistItem
    from db.models.base import utcnow
    from services import launch_figures, metrics
    from services.metric_labels import percent

    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "Preflight & checklist", "Go-live preflight & checklist")
    page.wait_for_selector("text=Live smoke test", timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Create smoke-test Checkout Session").click()
    page.wait_for_selector("text=Checkout URL:", timeout=TIMEOUT_MS)
    url = page.locator("[data-testid='stCode']").filter(has_text="checkout.stripe.com").first.inner_text().strip()
    session_id = re.search(r"cs_test_[0-9a-f]+", url)
    assert session_id, url
    assert page.locator("[data-testid='stImage'] img").count() >= 1  # the QR code
    screenshot(page, "smoke_test_checkout")

    _complete_checkout(demo_server, session_id.group(0))
    rt = _demo_runtime(demo_server)
    from services import smoke_test

    try:
        page.wait_for_selector("text=/checks passed; refund and cancel to finish/", timeout=TIMEOUT_MS)
    except Exception as error:  # say what the run holds, not only that the text never came
        raise AssertionError(f"checks did not pass: {smoke_test.latest(rt.uow())}") from error
    wait_until_idle(page)
    page.get_by_role("button", name="Refund and cancel…").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(timeout=TIMEOUT_MS)
    assert "9.00 USD" in dialog.inner_text()
    dialog.get_by_role("button", name="Refund and cancel now").click()
    page.wait_for_selector("text=/Smoke test #\\d+: PASSED/", timeout=TIMEOUT_MS)
    screenshot(page, "smoke_test_passed")

    run = smoke_test.latest(rt.uow())
    assert run is not None and run["status"] == "passed" and run["checkout_session_id"] == session_id.group(0)
    assert [s["step"] for s in run["steps"]] == [name for name, _title in smoke_test.STEPS]
    assert rt.gateway.retrieve_subscription(run["subscription_id"])["status"] == "canceled"
    charges = list(rt.gateway.list_charges(payment_intent=run["payment_intent_id"]))
    assert charges[0]["refunded"] is True
    with rt.uow() as uow:
        item = uow.session.execute(select(ChecklistItem).where(ChecklistItem.key == "live_test_charge")).scalar_one()
        assert item.status == "done" and f"Smoke test #{run['id']}" in (item.note or "")

    # Two real sign-ups start today: one pays through Checkout, one walks away.
    basic = rt.settings.price_id("basic", "monthly")
    line = [{"price": basic, "quantity": 1}]
    paid = rt.gateway.create_checkout_session({"mode": "subscription", "line_items": line},
                                              idempotency_key="e2e:figures:paid")
    abandoned = rt.gateway.create_checkout_session({"mode": "subscription", "line_items": line},
                                                   idempotency_key="e2e:figures:abandoned")
    _complete_checkout(demo_server, paid["id"])
    _wait_for_subscription(rt, rt.gateway.retrieve_checkout_session(paid["id"])["subscription"])

    # The board's 24 h range is anchored at go-live once that is over 24 h ago; other browser tests
    # share this demo and may have set it, so go live an hour ago: the board then shows the last 24 h.
    metrics.set_golive_time(utcnow() - timedelta(hours=1), actor=demo_server.admin_email,
                            settings=rt.settings, uow=rt.uow())

    # The board's launch figures, against the data behind them (the smoke test is left out).
    open_page(page, "First 24 hours")
    page.wait_for_selector("text=Launch figures (runbook §13)", timeout=TIMEOUT_MS)
    wait_until_idle(page)
    end = utcnow() + timedelta(minutes=1)
    start = end - timedelta(hours=24, minutes=2)
    # Every Checkout Session in the window but the test activity (smoke test, QA matrix, test clocks)
    # the board leaves out; other browser tests on this demo may have added some of their own.
    listed = list(rt.gateway.list_checkout_sessions(created={"gte": int(start.timestamp())}))
    sessions = [s for s in listed if not launch_figures.is_test_object(s)]
    assert session_id.group(0) not in {s["id"] for s in sessions}  # the smoke test's own is left out
    assert {paid["id"], abandoned["id"]} <= {s["id"] for s in sessions}
    completed = sum(1 for s in sessions if s["status"] == "complete")
    expected = f"{completed} / {len(sessions)} ({percent(completed / len(sessions))})"
    assert expected in _metric_values_after_reloads(page, "Checkout completed / created", expected)
    rate = launch_figures.success_rate(rt.uow(), None, start=start, end=end)
    assert rate.subscriptions_active >= 1  # the paid sign-up (the smoke test's is left out)
    assert metric_value(page, "Subscriptions active / created").startswith(
        f"{rate.subscriptions_active} / {rate.subscriptions_created}")
    assert run["subscription_id"] not in page.inner_text("body")  # smoke activity stays out
    due = launch_figures.downgrades(rt.uow(), start=start, end=end)
    assert metric_value(page, "Downgrades applied / due") == f"{due.applied} / {due.due}"
    errors = launch_figures.change_errors(rt.uow(), start=start, end=end)
    assert metric_value(page, "Plan-change errors open") == \
        f"{sum(1 for e in errors if not e['resolved'])} of {len(errors)}"
    page.get_by_text("Launch figures (runbook §13)").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "first_24h_launch_figures.png"))
