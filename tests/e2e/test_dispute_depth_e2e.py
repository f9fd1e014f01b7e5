"""In a real browser against `billing-ops demo`: the seeded Visa CE 3.0 dispute shows its network
reason code, its eligibility and its timeline; evidence with an image is staged (Stripe reports
it qualified), submitted with the prior payments as enhanced evidence, and read back with a
preview; the analytics page shows win rates and the monitoring programmes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import choose_option, open_page, screenshot, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e


def _ce3_dispute(demo_server: Any) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{demo_server.data_dir}/billing_ops.db")
    try:
        with engine.connect() as conn:
            found = conn.execute(text("select id from disputes where json_extract(raw, '$.network_reason_code') = "
                                      "'10.4' and status = 'needs_response'")).scalar()
    finally:
        engine.dispose()
    assert found, "the demo's month includes a Visa CE 3.0 eligible dispute"
    return str(found)


def _gateway(demo_server: Any) -> Any:
    from demo import DEMO_API_KEY
    from services.config import load_settings
    from services.stripe_gateway import StripeGateway

    return StripeGateway(load_settings({"STRIPE_API_KEY": DEMO_API_KEY, "STRIPE_API_BASE": demo_server.emulator_url,
                                        "STRIPE_RATE_LIMIT_PER_SECOND": "100"}, env_file=None))


def test_ce3_dispute_timeline_submission_and_analytics(demo_server: Any, page: Any, tmp_path: Path) -> None:
    from PIL import Image

    target = _ce3_dispute(demo_server)
    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "Disputes")
    choose_option(page, "Dispute", target)
    page.wait_for_selector("text=reason code", timeout=60_000)
    body = page.locator("body").inner_text()
    assert "10.4" in body and "Visa Compelling Evidence 3.0" in body
    assert "Eligible: two prior undisputed payments share" in body
    # The timeline grid: its cells are readable through the grid's accessibility table.
    opened = page.locator("[data-testid='stDataFrame'] [role='gridcell']", has_text="Opened as a chargeback")
    opened.first.wait_for(state="attached", timeout=60_000)
    page.get_by_text("Visa Compelling Evidence 3.0", exact=True).first.scroll_into_view_if_needed()
    screenshot(page, "dispute_ce3_eligible")

    image = tmp_path / "access-log.png"
    buffer = io.BytesIO()
    Image.new("RGB", (120, 60), (20, 120, 200)).save(buffer, format="PNG")
    image.write_bytes(buffer.getvalue())
    page.locator("input[type='file']").set_input_files(str(image))
    page.get_by_role("button", name="Upload file").click()
    page.wait_for_selector("text=Attached access-log.png", timeout=60_000)
    page.wait_for_selector("text=Receipt: access-log.png", timeout=60_000)  # the reason's key file field
    wait_until_idle(page)
    page.get_by_role("button", name="Save draft").click()
    page.wait_for_selector("text=Draft saved and staged", timeout=60_000)
    wait_until_idle(page)
    page.wait_for_selector("text=Stripe: qualified", timeout=60_000)
    page.get_by_role("button", name="Submit evidence…").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    dialog.get_by_role("button", name="Submit evidence").click()
    page.wait_for_selector("text=Evidence submitted; the dispute is under review.", timeout=60_000)
    wait_until_idle(page)
    page.wait_for_selector("text=Submitted evidence", timeout=60_000)
    preview = page.locator("[data-testid='stImage'] img").first
    preview.wait_for(timeout=60_000)
    assert preview.evaluate("img => img.naturalWidth") == 120  # the uploaded image itself, drawn
    assert page.get_by_text("access-log.png · PNG").count() > 0
    preview.scroll_into_view_if_needed()
    screenshot(page, "dispute_ce3_submitted")

    # What Stripe (the emulator) holds, through the real SDK.
    dispute = _gateway(demo_server).retrieve_dispute(target)
    assert dispute["status"] == "under_review"
    assert dispute["evidence_details"]["enhanced_eligibility"]["visa_compelling_evidence_3"]["status"] == "qualified"
    priors = dispute["evidence"]["enhanced_evidence"]["visa_compelling_evidence_3"]["prior_undisputed_transactions"]
    assert len(priors) == 2 and all(p["charge"].startswith("ch_") for p in priors)

    open_page(page, "Dispute analytics")
    page.wait_for_selector("text=Win rate by network", timeout=60_000)  # the page renders past its first widget
    wait_until_idle(page)
    body = page.locator("body").inner_text()
    assert "Win rate by reason" in body and "Win rate by network" in body
    for programme in ("Visa VAMP excessive", "Mastercard Excessive Chargeback Merchant"):
        cell = page.locator("[data-testid='stDataFrame'] [role='gridcell']", has_text=programme)
        cell.first.wait_for(state="attached", timeout=30_000)
    assert "Time to respond (median)" in body
    screenshot(page, "dispute_analytics")
