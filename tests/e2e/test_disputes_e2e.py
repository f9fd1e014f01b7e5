"""Disputes in a real browser against `billing-ops demo`: open the most urgent dispute that can
still be answered, upload a PDF, save a draft, submit with confirmation, see it under review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import choose_option, open_page, press, screenshot, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e


def test_answer_the_most_urgent_dispute(demo_server: Any, page: Any, tmp_path: Path) -> None:
    sign_in(page, demo_server, demo_server.admin_email)
    open_page(page, "Disputes")
    # The queue puts overdue disputes first; the most urgent one that can still be answered is "due in 24 h".
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{demo_server.data_dir}/billing_ops.db")
    with engine.connect() as conn:
        target = conn.execute(text(
            "select id from disputes where status = 'needs_response' and due_by > datetime('now') "
            "order by due_by limit 1")).scalar()
    engine.dispose()
    assert target, "the demo has a dispute due soon"
    choose_option(page, "Dispute", target)
    assert target in (page.get_by_role("link", name="Open in Stripe").get_attribute("href") or "")

    pdf = tmp_path / "receipt.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% receipt for the disputed charge\n" + b"0" * 2048)
    page.locator("input[type='file']").set_input_files(str(pdf))
    press(page, "Upload file", "Attached receipt.pdf")
    press(page, "Save draft", "Draft saved and staged")
    page.get_by_role("button", name="Submit evidence…").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    assert "only once" in dialog.inner_text()
    dialog.get_by_role("button", name="Submit evidence").click()
    page.wait_for_selector("text=Evidence submitted; the dispute is under review.", timeout=60_000)
    wait_until_idle(page)
    screenshot(page, "dispute_submitted")
    engine = create_engine(f"sqlite:///{demo_server.data_dir}/billing_ops.db")
    with engine.connect() as conn:
        status = conn.execute(text("select status from disputes where id = :id"), {"id": target}).scalar()
    engine.dispose()
    assert status == "under_review"  # it left the open queue; the billing DB shows it under review
