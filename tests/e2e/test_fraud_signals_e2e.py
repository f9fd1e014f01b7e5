"""The First-24h board's fraud signals (issue 19 part 3) in a real browser against `billing-ops demo`:
the demo's month ends with a card-testing burst (small guest payments on Stripe's decline test
cards, backfilled from the emulator), so the board alerts on it; every panel's figure (card
testing, dispute volume, early fraud warnings) is the count of the demo DB rows behind it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import open_page, screenshot, sign_in

pytestmark = pytest.mark.e2e


def _figures(demo_server: Any) -> dict[str, Any]:
    """What the board should show, counted straight from the demo's DB (defaults: 20 an hour, 5 a day)."""
    from sqlalchemy import func, select

    from db.models import Charge, Dispute, FraudWarning
    from db.session import UnitOfWork

    now = datetime.now(UTC)
    hour, day = now - timedelta(hours=1), now - timedelta(hours=24)
    with UnitOfWork(f"sqlite:///{demo_server.data_dir}/billing_ops.db") as uow:
        session = uow.session
        declines = [(raw or {}).get("failure_code") for raw in session.execute(
            select(Charge.raw).where(Charge.status == "failed", Charge.created >= hour)).scalars()]
        small = session.execute(select(func.count()).select_from(Charge).where(
            Charge.amount > 0, Charge.amount <= 100, Charge.created >= hour)).scalar_one()
        disputes = session.execute(select(func.count()).select_from(Dispute).where(
            Dispute.created >= day)).scalar_one()
        warnings = session.execute(select(func.count()).select_from(FraudWarning).where(
            FraudWarning.created >= day)).scalar_one()
    return {"declines": len(declines), "reasons": Counter(declines), "small": small, "disputes": disputes,
            "warnings": warnings}


def _row(page: Any, signal: str) -> list[str]:
    row = page.locator("[data-testid='stDataFrame'] [role='row']", has_text=signal).first
    row.wait_for(state="attached", timeout=60_000)
    return [str(cell).strip() for cell in row.locator("[role='gridcell']").all_inner_texts()]


def test_card_testing_burst_alerts_with_the_figures_behind_it(demo_server: Any, page: Any) -> None:
    sign_in(page, demo_server, demo_server.admin_email)
    before = _figures(demo_server)
    open_page(page, "First 24 hours")
    page.wait_for_selector("text=Fraud signals", timeout=60_000)
    alert = page.locator("[data-testid='stAlert']").filter(has_text="Card testing: declined charges").first
    alert.wait_for(timeout=60_000)
    after = _figures(demo_server)
    assert before == after, "the data behind the board moved while it loaded"
    figures = after
    # The seeded burst: 24 declines of 0.50 to 1.00 in the last quarter hour, by reason.
    assert figures["declines"] >= 24 and figures["small"] >= 24
    text = alert.inner_text()
    top = ", ".join(f"{reason} ×{count}" for reason, count in figures["reasons"].most_common(3))
    assert f"{figures['declines']} declined charges in the last hour (alert at 20); top reasons: {top}" in text, text
    assert "card_declined" in top and "incorrect_cvc" in top
    small_alert = page.locator("[data-testid='stAlert']").filter(has_text="Card testing: very small charges")
    assert f"{figures['small']} charges of at most 100 minor units" in small_alert.first.inner_text()

    # The panel: one row per signal, its figure and state against its threshold.
    expected = {
        "Card testing: declined charges": (figures["declines"], 20),
        "Card testing: very small charges": (figures["small"], 20),
        "Dispute volume": (figures["disputes"], 5),
        "Early fraud warnings": (figures["warnings"], 5),
    }
    for signal, (value, threshold) in expected.items():
        cells = _row(page, signal)
        assert str(value) in cells and str(threshold) in cells, (signal, cells)
        assert ("ALERT" if value >= threshold else "ok") in cells, (signal, cells)
    page.get_by_text("Fraud signals", exact=True).first.scroll_into_view_if_needed()
    screenshot(page, "board_fraud_signals")
